"""Tool search: a BM25 index over a catalog, for endpoints with ``search: true``.

A model given a thousand tools chooses worse than one given five, and clients cap
lists (~128 tools). A search endpoint lists only ``search_tools`` and ``call_tool``;
the model asks for what it needs in words and calls it by name.

Ranking is BM25 (``bm25s``) per field, summed with weights: the tool's name split
into words (snake, camel, kebab, digits apart), its title and description, and its
argument names and descriptions. Words are lower-cased and lightly stemmed, so
"lists pods" meets ``list_pod``. An index is built once per catalog: the view's
digest of the tools list says when it changed (``list_changed``, a target coming or
going, a curation edit), and only then is it rebuilt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # imported on first use: numpy and bm25s add ~0.15 s to every start
    import bm25s

#: Field weights: a word of the name says more than one of a long description.
WEIGHTS: Final = {"name": 3.0, "text": 1.0, "args": 0.6}
DEFAULT_LIMIT: Final = 5
MAX_LIMIT: Final = 50

_WORD: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_STOP: Final = frozenset(
    "a an and are as at be by can do does for from give how i in into is it its me my "
    "of on or our please show some that the their them then there these this to use using "
    "want we what when where which who will with would you your".split()
)


def stem(word: str) -> str:
    """A light suffix stripper (no dictionary): enough to join plural and verb forms
    ("creates", "created", "creating" -> "creat"; "running" -> "run")."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e"), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                break
            word = word[: len(word) - len(suffix)] + repl
            if suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def words(text: str) -> list[str]:
    """Index terms of any text or identifier: ``getPodLogs_v2`` -> get, pod, log, v, 2."""
    out = []
    for raw in _WORD.findall(text):
        w = raw.lower()
        if w not in _STOP:
            out.append(stem(w))
    return out


#: Words agents use for the words tools use. A query term also looks for these, at
#: ``SYNONYM_WEIGHT``: BM25 alone cannot know that "save" may mean "create".
_THESAURUS: Final = {
    "save": "create store write add", "create": "add new make", "make": "create",
    "new": "create", "add": "create insert", "store": "save create",
    "remove": "delete", "delete": "remove", "erase": "delete", "drop": "delete",
    "find": "search lookup query list", "search": "find query", "lookup": "find search",
    "look": "search find", "show": "list read view describe", "view": "read show",
    "fetch": "read download retrieve", "read": "fetch view", "retrieve": "fetch read",
    "change": "update edit modify set", "edit": "update modify", "modify": "update edit",
    "update": "edit modify patch set", "rename": "update move", "move": "rename",
    "send": "post message email", "mail": "email", "email": "mail message",
    "message": "email chat", "chat": "message", "post": "send publish",
    "rain": "weather forecast", "raining": "weather forecast", "sunny": "weather",
    "temperature": "weather forecast", "forecast": "weather", "weather": "forecast",
    "time": "clock date now", "clock": "time", "date": "time", "now": "current time",
    "current": "now", "sum": "add total", "plus": "add sum", "total": "sum",
    "stop": "terminate kill cancel", "kill": "terminate stop delete", "cancel": "stop",
    "start": "run launch create", "run": "execute start", "execute": "run",
    "launch": "start run", "restart": "rollout", "memo": "note", "note": "memo",
    "repo": "repository", "repository": "repo", "download": "fetch get",
    "upload": "put create", "picture": "image", "photo": "image", "image": "picture",
    "doc": "document", "document": "doc file", "user": "account member",
    "account": "user", "bug": "issue", "ticket": "issue",
    "scale": "replica", "replicas": "scale", "container": "pod", "pod": "container",
    "secret": "credential", "credential": "secret", "config": "configuration",
    "configuration": "config", "cluster": "node", "size": "count length",
    "count": "size number", "random": "generate", "generate": "create random",
    "echo": "repeat", "repeat": "echo", "buy": "order purchase", "order": "purchase",
    "purchase": "order buy", "pet": "animal", "animal": "pet", "inventory": "stock",
    "stock": "inventory", "convert": "translate", "translate": "convert",
    "open": "create start", "issue": "ticket bug create", "unsubscribe": "delete remove",
    "subscribe": "create add", "latest": "list recent", "recent": "list latest",
    "which": "list", "exist": "list", "every": "all deletecollection", "all": "list",
    "many": "count list", "happen": "event", "detail": "read get", "get": "read",
    "book": "create reserve", "reserve": "create book", "request": "create",
}
SYNONYM_WEIGHT: Final = 0.4
#: Tools that only read (their name's verb, or ``readOnlyHint``) get this share of the
#: best score on top: when a query names no action ("the ingress rules of shop"), an
#: agent wants to look, not to change; a query that says "delete" still outranks it.
READ_PRIOR: Final = 0.08
_READ_VERBS: Final = frozenset({"list", "get", "read", "search", "find", "query", "describe", "show", "fetch"})


def _build_thesaurus() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for word, alts in _THESAURUS.items():
        key = stem(word)
        extra = tuple(dict.fromkeys(stem(a) for a in alts.split() if stem(a) != key))
        out[key] = tuple(dict.fromkeys((*out.get(key, ()), *extra)))
    return out


THESAURUS: Final = _build_thesaurus()


def _arg_text(tool: dict[str, Any]) -> str:
    schema = tool.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return ""
    parts = []
    for name, spec in props.items():
        parts.append(str(name))
        if isinstance(spec, dict) and isinstance(spec.get("description"), str):
            parts.append(spec["description"])
    return " ".join(parts)


def _fields(tool: dict[str, Any]) -> dict[str, list[str]]:
    name = str(tool.get("name", ""))
    title = tool.get("title") if isinstance(tool.get("title"), str) else ""
    desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
    return {"name": words(name), "text": words(f"{title} {desc}"), "args": words(_arg_text(tool))}


def _reads_only(tool: dict[str, Any]) -> bool:
    notes = tool.get("annotations")
    if isinstance(notes, dict) and notes.get("readOnlyHint") is True:
        return True
    name = str(tool.get("name", ""))
    own = name.split("_", 1)[1] if "_" in name else name  # after the target prefix
    first = _WORD.findall(own)
    return bool(first) and first[0].lower() in _READ_VERBS


@dataclass
class ToolIndex:
    """BM25 over one list of tools (their exposed definitions)."""

    tools: list[dict[str, Any]]
    #: What it was built from (the view's digest of the tools list, and the subset).
    key: Any = None
    _fields: dict[str, bm25s.BM25] = field(default_factory=dict)
    _vocab: dict[str, set[str]] = field(default_factory=dict)
    _reads: Any = None

    def __post_init__(self) -> None:
        import bm25s
        import numpy as np

        per_tool = [_fields(t) for t in self.tools]
        self._reads = np.array([_reads_only(t) for t in self.tools], dtype=np.float32)
        for name in WEIGHTS:
            corpus = [f[name] for f in per_tool]
            vocab = {w for doc in corpus for w in doc}
            if not vocab:
                continue
            index = bm25s.BM25()
            index.index(corpus, show_progress=False)
            self._fields[name] = index
            self._vocab[name] = vocab

    def search(self, query: str, limit: int = DEFAULT_LIMIT,
               allowed: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The best ``limit`` tools for ``query`` (those ``allowed`` only), best first."""
        import numpy as np

        terms = words(query)
        if not terms or not self.tools:
            return []
        related = [a for t in dict.fromkeys(terms) for a in THESAURUS.get(t, ()) if a not in terms]
        scores = np.zeros(len(self.tools), dtype=np.float32)
        for name, index in self._fields.items():
            vocab = self._vocab[name]
            for group, weight in ((terms, 1.0), (related, SYNONYM_WEIGHT)):
                known = [t for t in group if t in vocab]
                if known:
                    scores += (WEIGHTS[name] * weight) * index.get_scores(known)
        best = float(scores.max())
        if best > 0:
            scores += (READ_PRIOR * best) * self._reads * (scores > 0)
        order = np.argsort(-scores, kind="stable")
        out: list[dict[str, Any]] = []
        for i in order:
            if scores[i] <= 0 or len(out) >= limit:
                break
            tool = self.tools[int(i)]
            if allowed is None or allowed(tool):
                out.append(tool)
        return out


# -- the two tools a search endpoint lists ------------------------------------------------
SEARCH_TOOLS: Final = "search_tools"
CALL_TOOL: Final = "call_tool"

SEARCH_DEFS: Final[list[dict[str, Any]]] = [
    {
        "name": SEARCH_TOOLS,
        "description": (
            "Find the tools that can do a task. Describe the task in words; returns the best "
            "matching tools with their full definitions (name, description, inputSchema). "
            f"Run one with {CALL_TOOL}."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do, in words"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                          "description": f"How many tools to return (default {DEFAULT_LIMIT})"},
            },
            "required": ["query"],
        },
        "outputSchema": {
            "type": "object",
            "properties": {"tools": {"type": "array", "items": {"type": "object"}}},
            "required": ["tools"],
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    },
    {
        "name": CALL_TOOL,
        "description": (
            f"Run a tool found with {SEARCH_TOOLS}: give its exact name and its arguments "
            "as its inputSchema describes them."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": f"The tool's name, as {SEARCH_TOOLS} gave it"},
                "arguments": {"type": "object", "description": "The tool's arguments"},
            },
            "required": ["name"],
        },
    },
]
