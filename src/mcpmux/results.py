"""Oversized tool results: cut for the client, kept whole behind a ``resource_link``.

A tool result over ``limits.max_result_bytes`` would flood a model's context. The
client gets its first part (text cut on a character boundary, binary items kept or
dropped whole, a note saying what went) plus a link ``mcpmux://results/{id}``; the
whole result stays readable with ``resources/read`` until it expires. The id is 128
random bits, and a result belongs to whoever got it (a 2025 session, or for 2026
stateless requests the principal): anyone else gets "unknown resource", as for an
id that never existed.

Stored results live in memory up to ``limits.max_result_memory_bytes``; past it they
are written to a private temporary directory (0700, files 0600) and read from
there; past ``limits.max_result_disk_bytes`` the oldest are dropped. Each one is
deleted when it expires and all at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .config import LimitsConfig

log = logging.getLogger("mcpmux.results")

SCHEME: Final = "mcpmux://results/"
#: Binary content items: never cut, kept or dropped whole.
_BINARY: Final[tuple[str, ...]] = ("image", "audio", "resource")
#: What the note, the link and JSON framing take at most (kept out of the text's share).
_RESERVE: Final = 1024


@dataclass(slots=True)
class _Stored:
    owner: str
    size: int
    expires: float
    body: bytes | None  # None: on disk
    path: str | None = None


class ResultStore:
    """Whole results behind their links, bounded in memory and on disk, expiring."""

    def __init__(self, limits: Callable[[], LimitsConfig], clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        #: id -> entry, oldest first (every entry gets the same time to live).
        self._entries: OrderedDict[str, _Stored] = OrderedDict()
        self.memory_bytes = 0
        self.disk_bytes = 0
        self._dir: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    # -- cutting -----------------------------------------------------------
    def limit(self, res: Any, size: int | None, owner: str) -> Any:
        """``res`` (a CallToolResult) as the client may get it: itself when it fits,
        else its first part and a link. ``size``: its serialised length when the
        transport measured it (None: measured here, once)."""
        limit = self._limits().max_result_bytes
        if not limit or not isinstance(res, dict) or res.get("resultType") == "input_required":
            return res
        if size is not None and size <= limit:
            return res  # the hot path: one comparison
        body = orjson.dumps(res)
        size = len(body)
        if size <= limit:
            return res
        content = res.get("content")
        if not isinstance(content, list):
            return res  # not a tool result we know how to cut
        rid = self._put(owner, body)
        return _cut(res, content, limit, size, rid, self._limits().result_ttl)

    # -- storing -----------------------------------------------------------
    def _put(self, owner: str, body: bytes) -> str:
        self._expire()
        limits = self._limits()
        rid = secrets.token_urlsafe(16)
        entry = _Stored(owner, len(body), self._clock() + limits.result_ttl, body)
        if self.memory_bytes + len(body) > limits.max_result_memory_bytes:
            self._spill(rid, entry, limits.max_result_disk_bytes)
        else:
            self.memory_bytes += len(body)
        self._entries[rid] = entry
        self._schedule()
        return rid

    def _spill(self, rid: str, entry: _Stored, disk_limit: int) -> None:
        """Write ``entry`` to the private directory, dropping the oldest spilled ones
        while the disk bound would be passed."""
        assert entry.body is not None
        for old_id in [i for i, e in self._entries.items() if e.path is not None]:
            if self.disk_bytes + entry.size <= disk_limit:
                break
            self._drop(old_id)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="mcpmux-results-")  # mode 0700
            log.info("oversized results past the memory bound are kept in %s", self._dir)
        path = os.path.join(self._dir, rid)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(entry.body)
        entry.body, entry.path = None, path
        self.disk_bytes += entry.size

    async def read(self, uri: str, owner: str) -> dict[str, Any] | None:
        """The stored result behind ``uri`` as ``resources/read`` contents; None when it
        is unknown, expired, or someone else's."""
        self._expire()
        entry = self._entries.get(uri[len(SCHEME):]) if uri.startswith(SCHEME) else None
        if entry is None or not secrets.compare_digest(entry.owner, owner):
            return None
        body = entry.body
        if body is None:
            assert entry.path is not None
            try:
                body = await asyncio.to_thread(_read_file, entry.path)
            except OSError:
                return None  # dropped (expired, evicted) while we read
        return {"contents": _contents(uri, orjson.loads(body))}

    # -- expiry ------------------------------------------------------------
    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            rid, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                break
            self._drop(rid)

    def _drop(self, rid: str) -> None:
        entry = self._entries.pop(rid)
        if entry.path is not None:
            self.disk_bytes -= entry.size
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        else:
            self.memory_bytes -= entry.size

    def _schedule(self) -> None:
        """One timer, for the oldest entry: expired results leave memory and disk on time,
        not on the next request."""
        if self._timer is not None or not self._entries:
            return
        first = next(iter(self._entries.values()))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, first.expires - self._clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._expire()
        self._schedule()

    def close(self) -> None:
        """Shutdown: every stored result goes, and the directory with them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()
        self.memory_bytes = self.disk_bytes = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _item_size(item: Any) -> int:
    """An item's share of the budget: its serialised length (binary items are base64
    text already, so this is close to what goes on the wire)."""
    return len(orjson.dumps(item))


def _describe(item: Any) -> str:
    if not isinstance(item, dict):
        return "1 item"
    kind = item.get("type", "item")
    if kind == "resource" and isinstance(item.get("resource"), dict):
        mime = item["resource"].get("mimeType")
    else:
        mime = item.get("mimeType")
    return f"{kind}{f' ({mime})' if mime else ''}, {_item_size(item)} bytes"


def _cut(res: dict[str, Any], content: list[Any], limit: int, size: int, rid: str, ttl: float) -> dict[str, Any]:
    """The first part of ``res`` within ``limit`` bytes, a note and the link."""
    budget = max(0, limit - _RESERVE)
    kept: list[Any] = []
    dropped: list[str] = []
    cut_text = False
    for item in content:
        need = _item_size(item)
        if need <= budget and not cut_text:
            kept.append(item)
            budget -= need
            continue
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str) and not cut_text:
            part = _head(item["text"], budget - 64)
            if part:
                kept.append({**item, "text": part})
            budget = 0
            cut_text = True
            continue
        if isinstance(item, dict) and item.get("type") in _BINARY and need <= budget:
            kept.append(item)  # after the cut, a whole binary item that still fits stays
            budget -= need
            continue
        dropped.append(_describe(item))
    uri = f"{SCHEME}{rid}"
    parts = [f"[mcpmux: this result is {size} bytes, over limits.max_result_bytes ({limit}); "
             f"{'its text was cut' if cut_text else 'it was shortened'}."]
    if dropped:  # named up to eight, so the note stays within its reserve
        more = f"; and {len(dropped) - 8} more items" if len(dropped) > 8 else ""
        parts.append(f" Left out: {'; '.join(dropped[:8])}{more}.")
    out: dict[str, Any] = {k: v for k, v in res.items() if k not in ("content", "structuredContent")}
    if "structuredContent" in res:
        parts.append(" structuredContent was left out too.")
    parts.append(f" The whole result: resources/read {uri} (within {ttl:g} s).]")
    link = {"type": "resource_link", "uri": uri, "name": f"result-{rid[:8]}",
            "description": "the whole tool result (cut above)", "mimeType": "application/json", "size": size}
    out["content"] = [*kept, {"type": "text", "text": "".join(parts)}, link]
    return out


def _head(text: str, budget: int) -> str:
    """A start of ``text`` whose JSON string takes at most ``budget`` bytes, cut on a
    character boundary (escapes such as ``\\n`` count double: shrink until it fits)."""
    raw, n = text.encode(), budget
    while n > 0:
        part = raw[:n].decode("utf-8", "ignore")
        over = len(orjson.dumps(part)) - budget
        if over <= 0:
            return part
        n -= over
    return ""


def _contents(uri: str, res: Any) -> list[dict[str, Any]]:
    """A stored result as resource contents: one entry per content item, in order
    (text as text, images and audio as blobs, embedded resources as they were), then
    ``structuredContent`` as JSON."""
    out: list[dict[str, Any]] = []
    items = res.get("content") if isinstance(res, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text" and isinstance(item.get("text"), str):
            out.append({"uri": uri, "mimeType": "text/plain", "text": item["text"]})
        elif kind in ("image", "audio") and isinstance(item.get("data"), str):
            out.append({"uri": uri, "mimeType": item.get("mimeType") or "application/octet-stream",
                        "blob": item["data"]})
        elif kind == "resource" and isinstance(item.get("resource"), dict):
            out.append({**item["resource"], "uri": uri})
        else:
            out.append({"uri": uri, "mimeType": "application/json", "text": orjson.dumps(item).decode()})
    if isinstance(res, dict) and "structuredContent" in res:
        out.append({"uri": uri, "mimeType": "application/json", "text": orjson.dumps(res["structuredContent"]).decode()})
    return out
