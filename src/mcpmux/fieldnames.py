"""HTTP header names, lowercased and decoded once per spelling; header lines checked
once where they are made.

Both HTTP/1.1 parsers (the listener's, ``listener/h1.py``, and the upstream client's,
``upstream/h1.py``) see the same few names on every message. ``bytes.lower()`` and
``decode()`` are method calls, which compiled code makes through the interpreter's
generic path (some 800 instructions each): a dictionary lookup is a fraction of that.
"""

from __future__ import annotations

from typing import Final

#: Distinct spellings remembered; names are client input, so the table is bounded
#: (first come) and a name past it is simply computed each time.
MAX_NAMES: Final = 512

_NAMES: Final[dict[bytes, tuple[bytes, str]]] = {}


def lowered(name: bytes) -> tuple[bytes, str]:
    """``name`` lowercased, as bytes and as a latin-1 string."""
    known = _NAMES.get(name)
    if known is None:
        low = name.lower()
        known = (low, low.decode("latin-1"))
        if len(_NAMES) < MAX_NAMES:
            _NAMES[bytes(name)] = known
    return known


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """``name: value`` lines, each ending in CRLF, for a response head. Raises
    ValueError if a name or value has CR, LF or NUL (it would split the head). Made
    once for what does not change (constant headers, a session's id): the listener
    writes such lines without scanning them again (``Cycle.answer``)."""
    for name, value in headers:
        for part in (name, value):
            if part.find(b"\r") >= 0 or part.find(b"\n") >= 0 or part.find(b"\0") >= 0:
                raise ValueError(f"response header {bytes(name)[:64]!r} has a character not allowed in HTTP")
    return b"".join([b"%b: %b\r\n" % (name, value) for name, value in headers])
