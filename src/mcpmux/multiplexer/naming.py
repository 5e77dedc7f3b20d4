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


#: What every client accepts as a tool or prompt name (some reject '.', ':' or length > 64).
CLIENT_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def client_name(full: str) -> str:
    """``full`` as every client accepts it: other characters become ``_``; past 64
    characters it is cut and ends in a stable hash of ``full`` (``-1a2b3c4d``). The
    view keeps the exact way back (exposed name -> target and original name)."""
    if CLIENT_SAFE.match(full):
        return full
    clean = _UNSAFE.sub("_", full) or "_"
    if len(clean) <= MAX_NAME:
        return clean
    return f"{clean[: MAX_NAME - 9]}-{_digest(full)}"


def prefixed_name(target: str, name: str) -> str:
    """``{target}_{name}``, made client-safe (see :func:`client_name`)."""
    return client_name(f"{target}_{name}")


def disambiguated(name: str, target: str, original: str) -> str:
    """Another name for an item whose client-safe name another item of its target took
    (``a.b`` and ``a_b`` both become ``a_b``): a hash of the item's own identity, so the
    name does not depend on which of the two was listed first."""
    return f"{name[: MAX_NAME - 9]}-{_digest(f'{target}/{original}')}"


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


# -- linear template matching ----------------------------------------------------------
# ``template_regex`` backtracks: ``files://{name}.{ext}`` against a 24 kB URI full of
# dots tried every split (quadratic) and blocked the gateway for 5.3 s. Routing uses
# ``TemplateMatcher`` instead: the same language, run as a DFA built lazily from the
# template's positions, so a URI costs one table step per character whatever its shape.

#: Pattern elements: a literal character; a variable of ``[^/?#]*`` or ``.*`` (a star,
#: which may also be skipped); the optional query part ``(?:[?&][^#]*)?`` as a "one of
#: ?&" position that may be skipped together with the star that follows it.
_LIT, _STAR, _QMARK = 0, 1, 2
_SEGMENT_STOP = frozenset("/?#")
_QUERY_STOP = frozenset("#")
_NOTHING: frozenset[str] = frozenset()
#: Stands for every character that plays no part in the template (one DFA column).
_OTHER = ""


class TemplateMatcher:
    """Does a URI match an RFC 6570 template (as ``template_regex`` reads it)?

    Linear in the URI's length: each character is one dictionary step through a DFA
    whose states are sets of template positions, built on demand and cached (their
    number is bounded by the template, not the URI). Also knows how specific the
    template is, for choosing among several matches.
    """

    __slots__ = ("_classes", "_elems", "_ids", "_sets", "_start", "_trans", "literal_chars",
                 "prefix", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        elems: list[tuple[int, str, frozenset[str]]] = []
        literal_chars = 0
        pos = 0
        for m in _VAR.finditer(template):
            lit = template[pos : m.start()]
            elems.extend((_LIT, c, _NOTHING) for c in lit)
            literal_chars += len(lit)
            op = m.group(1)
            if op in ("+", "#"):
                elems.append((_STAR, "", _NOTHING))
            elif op in ("?", "&"):
                elems.append((_QMARK, "?&", _NOTHING))
                elems.append((_STAR, "", _QUERY_STOP))
            else:
                elems.append((_STAR, "", _SEGMENT_STOP))
            pos = m.end()
        tail = template[pos:]
        elems.extend((_LIT, c, _NOTHING) for c in tail)
        literal_chars += len(tail)
        self._elems = elems
        #: Characters of the literal text, before the first variable.
        first = _VAR.search(template)
        self.prefix = template[: first.start()] if first else template
        #: How specific the template is: literal characters, then literal prefix length.
        self.literal_chars = literal_chars
        # Characters that any position tests for get their own column; the rest share one.
        special = set("/?#&")
        special.update(c for kind, c, _ in elems if kind == _LIT)
        self._classes = {c: c for c in special}
        self._sets: list[frozenset[int]] = []
        self._ids: dict[frozenset[int], int] = {}
        self._trans: dict[tuple[int, str], int] = {}
        self._start = self._intern(self._closure({0}))

    def _closure(self, states: set[int]) -> frozenset[int]:
        """Add the positions reachable without reading: skipped stars and query parts."""
        todo = list(states)
        out = set(states)
        while todo:
            i = todo.pop()
            if i >= len(self._elems):
                continue
            kind = self._elems[i][0]
            skip = i + 1 if kind == _STAR else i + 2 if kind == _QMARK else None
            if skip is not None and skip not in out:
                out.add(skip)
                todo.append(skip)
        return frozenset(out)

    def _intern(self, states: frozenset[int]) -> int:
        sid = self._ids.get(states)
        if sid is None:
            sid = self._ids[states] = len(self._sets)
            self._sets.append(states)
        return sid

    def _step(self, sid: int, c: str) -> int:
        nxt: set[int] = set()
        for i in self._sets[sid]:
            if i >= len(self._elems):
                continue
            kind, chars, stop = self._elems[i]
            if kind == _LIT:
                if c == chars:
                    nxt.add(i + 1)
            elif kind == _QMARK:
                if c and c in chars:
                    nxt.add(i + 1)
            elif c not in stop or not c:  # a star: stays, and may end (closure)
                nxt.add(i)
        out = self._intern(self._closure(nxt))
        self._trans[(sid, c)] = out
        return out

    def match(self, uri: str) -> bool:
        if not uri.startswith(self.prefix):
            return False
        classes, trans = self._classes, self._trans
        sid = self._start
        dead = self._intern(frozenset())
        for ch in uri:
            c = classes.get(ch, _OTHER)
            nxt = trans.get((sid, c))
            sid = self._step(sid, c) if nxt is None else nxt
            if sid == dead:
                return False
        return len(self._elems) in self._sets[sid]

    def specificity(self) -> tuple[int, int]:
        return self.literal_chars, len(self.prefix)


def template_matcher(template: str) -> TemplateMatcher:
    return TemplateMatcher(template)
