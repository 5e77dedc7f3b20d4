"""Newline-delimited JSON: how some 2026 servers stream on ``application/json``.

The conformance repository's reference server answers ``subscriptions/listen`` (and
streaming calls) with ``Content-Type: application/json`` and one JSON message per line
instead of SSE. Clients of that server read both; so must a gateway in front of it.
"""

from __future__ import annotations

import orjson

from .sse import EventTooLarge


class LineParser:
    """Incremental splitter into non-empty lines; ``max_line`` bounds the unfinished one
    (past it ``feed`` raises :class:`EventTooLarge`, like the SSE parser)."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._partial: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        end = chunk.find(b"\n")
        if end >= 0 and self._partial:
            line = b"".join((*self._partial, chunk[:end])).strip()
            self._partial, self._size = [], 0
            if line:
                out.append(line)
            start = end + 1
            end = chunk.find(b"\n", start)
        while end >= 0:  # by index: a chunk of many short lines is not copied per line
            line = chunk[start:end].strip()
            if line:
                out.append(line)
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            self._size += len(chunk) - start
            if self._size > self.max_line:
                raise EventTooLarge(self.max_line)
            self._partial.append(chunk[start:] if start else chunk)
        return out


def messages(body: bytes) -> list[object]:
    """A whole ``application/json`` body: one JSON value, or (failing that) one per line.

    Raises ``orjson.JSONDecodeError`` when neither reading works."""
    try:
        return [orjson.loads(body)]
    except orjson.JSONDecodeError:
        lines = [line for line in body.splitlines() if line.strip()]
        if len(lines) < 2:
            raise
        return [orjson.loads(line) for line in lines]
