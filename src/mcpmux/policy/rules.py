"""Authorization rules: CEL expressions compiled once, evaluated per request.

A request is allowed when any rule evaluates to ``true``; with no rules every
(authenticated) request is allowed. A rule that fails at run time — it reads a
field the request does not have (``mcp.tool`` on a ``prompts/get``), calls a method
on the wrong type, gives a non-boolean — counts as false for that request: rules
fail closed and never raise.

Activation:

- ``jwt``: every claim of the caller's access token (``{}`` without authentication);
- ``mcp``: ``method``, ``target``, and per method ``tool: {name}`` (tools/call),
  ``prompt: {name}`` (prompts/get), ``resource: {uri}`` (resources/*), ``arguments``;
- ``a2a`` (requests on the A2A listener only): ``agent``, ``method``.

A request has either ``mcp`` or ``a2a``: a rule that reads the other fails, so it is
false for that request (``jwt.sub == "alice"`` admits both kinds, ``mcp.target ==
"k8s"`` only MCP requests).

Library: ``common-expression-language`` (module ``cel``, Rust bindings to the
``cel`` crate), chosen over ``cel-python`` (``celpy``, pure Python). Measured on
the three example rules of the issue, one core, CPython 3.11 (details and the
method in docs/security.md, "Why this CEL library"):

======================================  ===========  =============
                                        cel (Rust)   celpy
======================================  ===========  =============
compile, per rule                       ~30 µs       ~285 µs
evaluate, per rule (values converted)   0.3-1.1 µs   200-370 µs
convert jwt + mcp to library values     ~37 µs       ~120 µs
``Rules.allows``, 3 rules (this module) ~19 µs       n/a
======================================  ===========  =============

Both gave the same answers on the example rules, including ``in`` on lists,
``size()`` and rules on missing fields (both raise; we deny). Known difference:
``cel`` 0.10 counts ``string.size()`` in UTF-8 bytes, not code points as the CEL
spec says (``"héllo".size()`` is 6), so a ``size() < N`` limit is stricter than
written for non-ASCII text; celpy is right there.

Converting Python values is what costs (the Rust evaluation itself is well under a
microsecond; a string costs about 1 µs, a map 2 µs, so a request's ``mcp`` 10-13 µs),
so :class:`Rules` converts each claims dict once and keeps it (LRU, keyed by the
dict's identity — treat ``Principal.claims`` as immutable) and, per request,
converts only the parts of ``mcp`` that some rule mentions (tool arguments, possibly
large, are skipped unless a rule reads ``mcp.arguments``).

A rule that reads neither ``mcp.arguments`` nor ``mcp`` whole decides the same for
the same caller, method, target and tool, prompt or resource: those rules are
evaluated once per such combination and their answer kept (LRU, as the claims).
Only the rules that read the arguments are evaluated on every request.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, Final

import cel

__all__ = ["Rules", "compile_rule"]

_VARIABLES: Final = frozenset({"jwt", "mcp", "a2a"})
# Names bound by comprehension macros: `list.exists(x, ...)` binds x.
_MACRO_VAR: Final = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_CEL_ERROR: Final = re.compile(r"<input>:(\d+):(\d+):\s*(.*)", re.DOTALL)
_MCP_FIELD: Final = re.compile(r"\bmcp\s*\.\s*([A-Za-z_]\w*)")
_MCP_WHOLE: Final = re.compile(r"\bmcp\b(?!\s*\.)")


def _clean_error(exc: Exception) -> str:
    text = str(exc)
    m = _CEL_ERROR.search(text)
    if m:
        line, col, what = m.groups()
        what = " ".join(what.split()).removeprefix("Syntax error: ")
        if len(what) > 160:
            what = what[:157] + "..."
        where = f"column {col}" if line == "1" else f"line {line}, column {col}"
        return f"syntax error at {where}: {what}"
    text = " ".join(text.split())
    return text[:200]


def compile_rule(source: str) -> Any:
    """Compile one rule; raise ValueError with a readable reason if it is not valid CEL
    or reads a variable other than ``jwt``, ``mcp`` and ``a2a``."""
    if not source.strip():
        raise ValueError("rule is empty")
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ValueError(f"invalid CEL rule {source!r}: {_clean_error(exc)}") from None
    bound = set(_MACRO_VAR.findall(source))
    unknown = sorted(set(program.variables()) - _VARIABLES - bound)
    if unknown:
        raise ValueError(
            f"invalid CEL rule {source!r}: unknown variable {unknown[0]!r} "
            "(rules can read 'jwt', 'mcp' and 'a2a')"
        )
    return program


class Rules:
    """A compiled rule set; see the module docstring for the activation."""

    def __init__(self, sources: list[str], *, claims_cache_size: int = 4096) -> None:
        self.sources = list(sources)
        programs = []
        for i, source in enumerate(self.sources):
            try:
                programs.append(compile_rule(source))
            except ValueError as exc:
                raise ValueError(f"rules[{i}]: {exc}") from None
        self._programs = programs
        # Rules whose answer depends on the request's arguments, and the others.
        rules = list(zip(programs, self.sources, strict=True))
        self._dynamic = _Group([r for r in rules if _reads_arguments(r[1])])
        self._static = _Group([r for r in rules if not _reads_arguments(r[1])])
        self._contexts: OrderedDict[int, tuple[dict[str, Any], Any]] = OrderedDict()
        #: (claims id, what the static rules read) -> (the claims, whether one is true)
        self._decisions: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], bool]] = OrderedDict()
        self._cache_size = claims_cache_size

    def __len__(self) -> int:
        return len(self._programs)

    def _context(self, jwt: dict[str, Any]) -> Any:
        entry = self._contexts.get(id(jwt))
        if entry is not None and entry[0] is jwt:
            self._contexts.move_to_end(id(jwt))
            return entry[1]
        ctx = cel.Context({"jwt": jwt})
        # Holding `jwt` keeps its id from being reused while the entry lives.
        self._contexts[id(jwt)] = (jwt, ctx)
        if len(self._contexts) > self._cache_size:
            self._contexts.popitem(last=False)
        return ctx

    def allows(self, jwt: dict[str, Any], mcp: dict[str, Any]) -> bool:
        """True when any rule is true for this request (always True with no rules)."""
        if not self._programs:
            return True
        static = self._static
        if static.programs:
            key = _key(id(jwt), mcp, static.fields)
            entry = self._decisions.get(key) if key is not None else None
            if key is not None and entry is not None and entry[0] is jwt:
                self._decisions.move_to_end(key)
                allowed = entry[1]
            else:
                allowed = self._evaluate(static, jwt, mcp)
                if key is not None:
                    self._decisions[key] = (jwt, allowed)  # holding jwt keeps its id unique
                    if len(self._decisions) > self._cache_size:
                        self._decisions.popitem(last=False)
            if allowed:
                return True
        return bool(self._dynamic.programs) and self._evaluate(self._dynamic, jwt, mcp)

    def _evaluate(self, group: _Group, jwt: dict[str, Any], mcp: dict[str, Any]) -> bool:
        fields = group.fields
        if fields is not None:
            mcp = {k: v for k, v in mcp.items() if k in fields}
        try:
            ctx = self._context(jwt)
            # The context is shared by this principal's requests; evaluation below is
            # synchronous, so no other request can swap `mcp` in between.
            ctx.add_variable("mcp", mcp)
        except Exception:
            self._contexts.pop(id(jwt), None)
            return False  # a value the library cannot represent: deny
        return _any(group.programs, ctx)

    def allows_a2a(self, jwt: dict[str, Any], a2a: dict[str, Any]) -> bool:
        """The same for a request on the A2A listener. Its context is built afresh: the
        cached ones carry the last MCP request's ``mcp``, which must not be seen here."""
        if not self._programs:
            return True
        try:
            ctx = cel.Context({"jwt": jwt, "a2a": a2a})
        except Exception:
            return False
        return _any(self._programs, ctx)


def _any(programs: list[Any], ctx: Any) -> bool:
    for program in programs:
        try:
            if program.execute(ctx) is True:
                return True
        except Exception:  # a rule that fails is a false rule
            continue
    return False


def _reads_arguments(source: str) -> bool:
    """Does a rule read the request's arguments (``mcp.arguments``, or ``mcp`` whole)?"""
    return bool(_MCP_WHOLE.search(source)) or "arguments" in _MCP_FIELD.findall(source)


class _Group:
    """Some of the rules (program, source), and the top-level fields of ``mcp`` they
    read (None: all)."""

    def __init__(self, rules: list[tuple[Any, str]]) -> None:
        self.programs = [program for program, _ in rules]
        whole = any(_MCP_WHOLE.search(source) for _, source in rules)
        self.fields: frozenset[str] | None = None if whole else frozenset(
            f for _, source in rules for f in _MCP_FIELD.findall(source))


def _key(claims: int, mcp: dict[str, Any], fields: frozenset[str] | None) -> tuple[Any, ...] | None:
    """What static rules can see of a request, as a cache key; None when some value
    is not a string or a map of strings (it is then evaluated, not remembered)."""
    if fields is None:
        return None
    key: list[Any] = [claims]
    for name in sorted(fields):
        value = mcp.get(name)
        if isinstance(value, dict):
            if not all(isinstance(v, str) for v in value.values()):
                return None
            value = tuple(sorted(value.items()))
        elif value is not None and not isinstance(value, str):
            return None
        key += (name, value)
    return tuple(key)
