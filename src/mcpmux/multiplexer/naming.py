"""How target names join server names: ``{target}_{name}`` and ``{target}+{uri}``.

Target names are DNS-1123 labels, so they never contain ``_`` or ``+``: the first
one splits a gateway name back into target and original without ambiguity.
"""

from __future__ import annotations

import hashlib
import re

#: Many clients reject tool names longer than this.
MAX_NAME = 64

_VAR = re.compile(r"\{([+#./;?&]?)([A-Za-z0-9_.,*%]+)\}")


def prefixed_name(target: str, name: str) -> str:
    """``{target}_{name}``, shortened with a stable hash when it would pass 64 characters."""
    full = f"{target}_{name}"
    if len(full) <= MAX_NAME:
        return full
    digest = hashlib.sha1(full.encode()).hexdigest()[:8]
    return f"{full[: MAX_NAME - 9]}-{digest}"


def prefixed_uri(target: str, uri: str) -> str:
    """Put the target in front of the scheme: ``everything+test://x`` stays a valid URI."""
    return f"{target}+{uri}"


def split_uri(uri: str) -> tuple[str, str] | None:
    head, sep, rest = uri.partition("+")
    if not sep or "/" in head or ":" in head:
        return None
    return head, rest


def template_regex(template: str) -> re.Pattern[str]:
    """A matcher for an RFC 6570 template (the operators MCP servers use in practice)."""
    out, pos = [], 0
    for m in _VAR.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        op = m.group(1)
        if op in ("+", "#"):
            out.append(".*")
        elif op == "?" or op == "&":
            out.append(r"(?:[?&][^#]*)?")
        else:
            out.append(r"[^/?#]*")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out) + r"\Z")
