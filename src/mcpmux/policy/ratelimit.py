"""Token-bucket rate limits per principal and per (principal, tool glob).

Each configured limit (:class:`~mcpmux.config.RateLimitConfig`) gives every
principal its own bucket: ``burst`` tokens, refilled at ``rate`` per second. A
request takes one token from every bucket that applies to it (the principal's, and
for ``tools/call`` each ``per: tool`` limit whose glob matches the tool name); it is
allowed only if all of them have a token, and then all are charged, so a refused
request costs nothing.

Memory is bounded: buckets live in one LRU of at most ``max_buckets`` entries; the
least recently used goes first. A bucket idle for ``burst / rate`` seconds is full
again and loses nothing by being evicted; only with more than ``max_buckets``
buckets in use within that time could a principal get its burst back early.
"""

from __future__ import annotations

import fnmatch
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from ..config import RateLimitConfig

__all__ = ["RateLimiter"]


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """``check(principal_key, tool)`` -> None (allowed, charged) or seconds to wait."""

    def __init__(
        self,
        limits: Sequence[RateLimitConfig],
        *,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = [
            (i, lim.rate, float(lim.burst or max(1.0, lim.rate)), lim.tool)
            for i, lim in enumerate(limits)
        ]
        self._principal = [(i, r, b) for i, r, b, t in self._limits if t is None]
        self._tool = [(i, r, b, t) for i, r, b, t in self._limits if t is not None]
        self._buckets: OrderedDict[tuple[int, str], _Bucket] = OrderedDict()
        self._max = max_buckets
        self._clock = clock
        self._glob_cache: dict[tuple[str, str], bool] = {}

    def __bool__(self) -> bool:
        return bool(self._limits)

    def _matches(self, tool: str, pattern: str) -> bool:
        key = (tool, pattern)
        hit = self._glob_cache.get(key)
        if hit is None:
            if len(self._glob_cache) > 10_000:
                self._glob_cache.clear()
            hit = self._glob_cache[key] = fnmatch.fnmatchcase(tool, pattern)
        return hit

    def check(self, principal_key: str, tool: str | None, now: float | None = None) -> float | None:
        """Charge one request of ``principal_key`` (to ``tool``, for tools/call).

        Returns None when allowed, else the seconds until it would be (for a
        ``Retry-After`` header or an error message); a refused request is not charged.
        """
        if not self._limits:
            return None
        if now is None:
            now = self._clock()
        applicable = list(self._principal)
        if tool is not None:
            applicable.extend((i, r, b) for i, r, b, t in self._tool if self._matches(tool, t))
        buckets: list[_Bucket] = []
        wait = 0.0
        for i, rate, burst in applicable:
            key = (i, principal_key)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(burst, now)
                self._buckets[key] = bucket
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket.stamp)
                bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
                bucket.stamp = now
            if bucket.tokens < 1.0:
                wait = max(wait, (1.0 - bucket.tokens) / rate)
            buckets.append(bucket)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if wait > 0.0:
            return wait
        for bucket in buckets:
            bucket.tokens -= 1.0
        return None

    def __len__(self) -> int:
        """Buckets held (for tests and metrics)."""
        return len(self._buckets)
