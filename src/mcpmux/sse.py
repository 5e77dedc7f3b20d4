"""Server-sent events: encode for clients, parse incrementally from upstreams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


def encode(data: bytes, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event. JSON from orjson never contains a raw newline, so one data line suffices."""
    out = b""
    if id is not None:
        out += b"id: " + id.encode() + b"\n"
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    return out + b"data: " + data + b"\n\n"


_BOM: Final = b"\xef\xbb\xbf"


@dataclass(slots=True, init=False)
class Event:
    """One parsed event. ``__init__`` written out: a compiled dataclass's generated
    one is interpreted."""

    event: str
    data: str
    id: str | None
    retry: int | None

    def __init__(self, event: str = "message", data: str = "", id: str | None = None,
                 retry: int | None = None) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry


class EventTooLarge(ValueError):
    """An upstream's SSE line (or the data of one event) passed the parser's limit.

    Without a limit an endless line without a newline is buffered until memory runs
    out; the caller turns this into an error naming the target, and drops the stream.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event larger than {limit} bytes")
        self.limit = limit


#: Default bound on one line / one event's data (callers pass the target's limit).
DEFAULT_MAX_EVENT: Final = 16 * 1024 * 1024


class Parser:
    """Incremental SSE parser (WHATWG rules for the fields MCP uses).

    ``max_event`` bounds the bytes buffered for one event (its unfinished line plus the
    ``data:`` lines already seen): past it ``feed`` raises :class:`EventTooLarge`.
    """

    def __init__(self, max_event: int = DEFAULT_MAX_EVENT) -> None:
        self.max_event = max_event
        #: Pieces of a line not yet ended; joined once, when its newline arrives, so a large
        #: message split into many chunks costs O(size), not O(size**2) re-scans and copies.
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._data_size = 0
        self._first_line = True
        self._event: str | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None
        #: The last ``retry:`` value seen, in milliseconds (how long to wait before resuming).
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        events: list[Event] = []
        start = 0
        while (idx := chunk.find(b"\n", start)) >= 0:
            line = chunk[start:idx]
            start = idx + 1
            if self._partial:
                self._partial.append(line)
                line = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            if len(line) + self._data_size > self.max_event:
                raise EventTooLarge(self.max_event)
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._first_line:  # WHATWG: one leading BOM is not part of the stream
                self._first_line = False
                line = line.removeprefix(_BOM)
            ev = self._line(line.decode("utf-8", "replace"))
            if ev is not None:
                events.append(ev)
        if start < len(chunk):
            self._partial_size += len(chunk) - start
            if self._partial_size + self._data_size > self.max_event:
                raise EventTooLarge(self.max_event)
            self._partial.append(chunk[start:])
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            # WHATWG: dispatching sets the last event id even for an event without data
            # (a server may send only ``id:`` before closing a stream it wants resumed).
            if self._id is not None:
                self.last_event_id = self._id
            if not self._data and self._event is None and self._retry is None:
                return None
            ev = Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
            self._event, self._data, self._retry = None, [], None
            self._data_size = 0
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = self.retry = int(value)
        return None
