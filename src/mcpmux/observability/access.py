"""The access log: one line per client request, on the ``mcpmux.access`` logger.

Fields: time, session, principal, method, target, tool, outcome, duration (ms) and
bytes (of the JSON-RPC answer). Never arguments or results, unless the debug option
``--access-log-bodies`` asks (they may hold secrets and personal data).
With ``--log-format json`` every log line, this one included, is one JSON object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import orjson

from ..redact import redact

log = logging.getLogger("mcpmux.access")
#: "000" to "999": formatting the milliseconds was a percent of a call.
_MS: Final = tuple(f"{ms:03d}" for ms in range(1000))

#: The record attribute holding an access line's fields (for the JSON formatter).
FIELDS: Final = "access"
#: The fields of an access line, in order (``arguments`` and ``result`` when asked for).
_ORDER: Final[tuple[str, ...]] = ("event", "session", "principal", "transport", "method", "target", "tool", "outcome",
          "duration_ms", "bytes")


def write(fields: dict[str, Any]) -> None:
    """Emit one access line through ``logging`` (the caller checked the logger is
    enabled for INFO). The gateway uses :class:`AccessLog` instead; this is the
    fallback when logging has no stream handler to write to."""
    log.info("%s", _Text(fields), extra={FIELDS: fields})


class AccessLog:
    """Access lines written straight to the log stream, in the format of the other
    lines, batched: ``logging`` costs some 20-40 µs a record (a LogRecord, filters,
    formatter, a write and flush each), a tenth of a forwarded call. Lines are formatted
    when the request ends and written at most ``interval`` seconds later (or every
    ``batch`` lines), secrets masked like every other line."""

    def __init__(self, stream: Any, json_format: bool, interval: float = 0.2, batch: int = 256) -> None:
        self.stream = stream
        self.json = json_format
        self.interval = interval
        self.batch = batch
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    @classmethod
    def for_root_logger(cls, json_format: bool) -> AccessLog | None:
        """Writing to the root logger's stream handler, if it has one (else None)."""
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:
                return cls(handler.stream, json_format)
        return None

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            fmt = "%Y-%m-%dT%H:%M:%S" if self.json else "%Y-%m-%d %H:%M:%S"
            self._stamp = time.strftime(fmt, time.gmtime(now) if self.json else time.localtime(now))
        ms = _MS[int((now - second) * 1000)]
        return self._stamp + "." + ms + "Z" if self.json else self._stamp + "," + ms

    def write(self, fields: dict[str, Any]) -> None:
        if self.json:
            self._add(orjson.dumps({"time": self._time(time.time()), "level": "info", "logger": "mcpmux.access",
                                    **fields}, default=str).decode())
        elif len(fields) == len(_ORDER):  # the usual fields
            f = fields
            self.text(f["session"], f["principal"], f["transport"], f["method"], f["target"], f["tool"],
                      f["outcome"], f["duration_ms"], f["bytes"])
        else:
            self._add(f"{self._time(time.time())} INFO    mcpmux.access: {_Text(fields)}")

    def text(self, session: str | None, principal: Any, transport: Any, method: Any, target: str | None,
             tool: Any, outcome: str, duration_ms: float, size: int) -> None:
        """The usual line in the text format, from its fields as arguments: the
        gateway's per-request path makes no dict for it (half the cost of a line)."""
        self._add(f"{self._time(time.time())} INFO    mcpmux.access: event=access session={session or '-'} "
                  f"principal={_plain(principal)} transport={transport} method={_plain(method)} "
                  f"target={target or '-'} tool={_plain(tool)} outcome={outcome} "
                  f"duration_ms={_decimal(duration_ms)} bytes={size}")

    def _add(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        if len(lines) >= self.batch:
            self.flush()
        elif len(lines) == 1:
            try:
                asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:  # no loop: write now
                self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        text = redact("\n".join(self._lines) + "\n")
        self._lines.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream: nothing to do but drop them
            pass


#: A millisecond count's decimals as ``repr`` prints them ("5" for .500, "0" for .000).
_FRACTION: Final = tuple(f"{r:03d}".rstrip("0") or "0" for r in range(1000))


def _decimal(ms: float) -> str:
    """``str(ms)`` for a count of milliseconds with 3 decimals (what ``milliseconds``
    makes), without the float-to-text conversion: a tenth of an access line's cost."""
    us = int(ms * 1000 + 0.5)
    return f"{us // 1000}.{_FRACTION[us % 1000]}"


class _Text:
    """The text form, rendered only if a text handler formats the record."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={_plain(v)}" for k, v in self.fields.items())


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value if value and " " not in value and '"' not in value else orjson.dumps(value).decode()
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one JSON object per line. Access lines carry their fields
    at the top level; other lines have ``message`` (and ``exc`` with a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # Configured secrets are masked here too (the redacting filter sees only the text).
        return redact(orjson.dumps(out, default=str).decode())
