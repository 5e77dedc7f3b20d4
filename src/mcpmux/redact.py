"""Secrets never leave the gateway in what it prints.

A process-wide registry of secret values: every ``${VAR}`` expansion taken from the
environment (config.py registers it while expanding) and every configured header
value of a target (and the credential after ``Bearer``/``Basic``/``Token``).
:func:`redact` replaces each with ``***``. It is applied where text that may quote a
secret is built (config errors, upstream error bodies) and, as a last line of
defence, by :class:`RedactingFilter` on the log handlers.

Why a registry and not patterns: a 401 body echoing request headers, or a validation
error quoting a wrongly placed ``${API_KEY}``, contains the secret verbatim and in no
recognisable shape. Values shorter than :data:`MIN_LENGTH` are not registered (they
would mask ordinary words and numbers everywhere). Registered values are kept for the
life of the process: masking a secret that was rotated away costs nothing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping

MIN_LENGTH = 4
MASK = "***"
#: Authorization schemes whose credential part is registered on its own too.
_SCHEMES = ("bearer ", "basic ", "token ", "apikey ")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(value: object) -> None:
    """Remember ``value`` (a string of at least ``MIN_LENGTH`` characters) as a secret."""
    global _pattern
    if not isinstance(value, str):
        return
    found = [value.strip()]
    low = found[0].lower()
    for scheme in _SCHEMES:
        if low.startswith(scheme):
            found.append(found[0][len(scheme):].strip())
    new = {v for v in found if len(v) >= MIN_LENGTH} - _secrets
    if not new:
        return
    with _lock:
        _secrets.update(new)
        # Longest first, so a secret that contains another is masked whole.
        alts = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alts))


def register_all(values: Iterable[object]) -> None:
    for v in values:
        register(v)


def register_headers(headers: Mapping[str, str]) -> None:
    """Every value of a configured header map (they carry API keys and tokens)."""
    register_all(headers.values())


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def clear() -> None:
    """Forget every secret (tests only)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's formatted message and exception text.

    Installed on the root handlers: a secret reaching a log line through any module's
    arguments (an exception's text, a child's stderr) is masked before it is written.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (default: root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
