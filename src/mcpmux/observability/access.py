"""The access log: one line per client request, on the ``mcpmux.access`` logger.

Fields: time, session, principal, method, target, tool, outcome, duration (ms) and
bytes (of the JSON-RPC answer). Never arguments or results, unless the debug option
``--access-log-bodies`` asks (they may hold secrets and personal data).
With ``--log-format json`` every log line, this one included, is one JSON object.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from ..redact import redact

log = logging.getLogger("mcpmux.access")

#: The record attribute holding an access line's fields (for the JSON formatter).
FIELDS = "access"


def write(fields: dict[str, Any]) -> None:
    """Emit one access line (the caller checked the logger is enabled for INFO)."""
    log.info("%s", _Text(fields), extra={FIELDS: fields})


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
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


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
