"""HTTP header names, lowercased and decoded once per spelling.

Both HTTP/1.1 parsers (the listener's, ``listener/h1.py``, and the upstream client's,
``upstream/h1.py``) see the same few names on every message. ``bytes.lower()`` and
``decode()`` are method calls, which compiled code makes through the interpreter's
generic path (some 800 instructions each): a dictionary lookup is a fraction of that.
"""

from __future__ import annotations

#: Distinct spellings remembered; names are client input, so the table is bounded
#: (first come) and a name past it is simply computed each time.
MAX_NAMES = 512

_NAMES: dict[bytes, tuple[bytes, str]] = {}


def lowered(name: bytes) -> tuple[bytes, str]:
    """``name`` lowercased, as bytes and as a latin-1 string."""
    known = _NAMES.get(name)
    if known is None:
        low = name.lower()
        known = (low, low.decode("latin-1"))
        if len(_NAMES) < MAX_NAMES:
            _NAMES[bytes(name)] = known
    return known
