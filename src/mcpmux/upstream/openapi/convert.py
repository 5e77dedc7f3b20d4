"""OpenAPI 3.0 / 3.1 and Swagger 2.0 documents to MCP tools, plus the table to call them.

Pure: a parsed document in, :class:`Conversion` out (tool definitions ready for
``tools/list`` and one :class:`Operation` per tool for building requests). No I/O.

Rules (docs/openapi.md has the user-facing version):

* one tool per operation, named by its ``operationId`` with every run of characters
  outside ``[A-Za-z0-9_-]`` replaced by ``_``; without one, ``{method}_{path}``
  (``get_pet_petId``); names over 64 characters become 55 + ``_`` + 8 hex digits of
  a hash; a name already taken gets ``_2``, ``_3``... in document order;
* ``inputSchema`` is one object: every path, query, header and cookie parameter is a
  property (its name reduced to ``[A-Za-z0-9_.-]``); the request body, when there is
  one, is always the single property ``body``. A parameter whose name collides with
  another parameter's (same name, another location) or with ``body`` is renamed
  ``{name}__{location}`` (``id__query``), so nothing is ever lost or merged;
* ``$ref`` is resolved and inlined (only references inside the document). In a
  reference cycle, the schema entered shows its own structure and one level of the
  other schemas of its cycle; references further into the cycle (or back to itself)
  become placeholders (``{"type": "object", "description": "Node (recursive; not
  expanded)"}``). Expansion always terminates, each schema is converted at most
  twice per direction, and results are shared, so huge specs convert in linear time;
* schemas become JSON Schema 2020-12 (what MCP clients validate with): ``nullable``
  becomes a ``"null"`` type, boolean ``exclusiveMinimum`` becomes a number,
  ``example`` becomes ``examples``, OpenAPI-only and ``x-`` keywords are dropped, and
  malformed keywords (a boolean ``required``, an invalid regex ``pattern``) are
  dropped rather than passed to clients that would reject the whole tool;
* ``outputSchema`` is the 2xx JSON response schema when every 2xx response the
  operation declares is a JSON object. It describes, it does not police: ``required``
  and ``additionalProperties: false`` are left out, since real APIs drift from their
  documents and clients reject a result that fails its output schema;
* a tool whose definition would exceed :data:`MAX_TOOL_BYTES` (64 KiB of JSON: a
  fully inlined Kubernetes Pod is 700 KiB) loses its ``outputSchema``, then has its
  references inlined fewer levels deep until it fits; a warning names such tools.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import unquote

import orjson
import yaml

__all__ = [
    "Body",
    "Conversion",
    "Operation",
    "Param",
    "SpecError",
    "convert",
    "parse_document",
    "tool_name",
]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_NAME = 64
#: Largest tool definition (JSON bytes) before its schemas are shortened. Clients put
#: every tool in the model's context; a 700 KiB tool (a fully inlined Kubernetes Pod)
#: helps nobody.
MAX_TOOL_BYTES = 64 * 1024
JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
Location = Literal["path", "query", "header", "cookie"]
BodyEncoding = Literal["json", "form", "multipart", "text", "binary"]
Mode = Literal["in", "out"]

#: Header parameters that OpenAPI says to ignore (the client sets them).
IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})


class SpecError(Exception):
    """The document cannot be turned into tools; the message says where and why."""


# ----------------------------------------------------------------------------- table


@dataclass(frozen=True, slots=True)
class Param:
    """One operation parameter and how to serialize it."""

    name: str  # as the API spells it
    location: Location
    arg: str  # the inputSchema property
    required: bool = False
    style: str = "form"
    explode: bool = True
    allow_reserved: bool = False
    as_json: bool = False  # declared with `content` (application/json): sent as JSON text


@dataclass(frozen=True, slots=True)
class Body:
    """The request body: always the ``body`` argument."""

    media_type: str
    encoding: BodyEncoding
    required: bool = False
    arg: str = "body"
    files: frozenset[str] = frozenset()  # multipart fields given as base64


@dataclass(frozen=True, slots=True)
class Operation:
    tool: str
    operation_id: str | None
    method: str  # upper case
    path: str
    params: tuple[Param, ...] = ()
    body: Body | None = None
    accept: str | None = None
    structured: bool = False  # has an outputSchema
    servers: tuple[str, ...] = ()  # path- or operation-level servers

    @property
    def label(self) -> str:
        """How errors name the operation: ``getPetById (GET /pet/{petId})``."""
        return f"{self.tool} ({self.method} {self.path})"


@dataclass
class Conversion:
    version: str  # "2.0", "3.0.4", "3.1.0"...
    title: str
    api_version: str
    tools: list[dict[str, Any]]
    operations: dict[str, Operation]
    servers: list[str]  # document-level base URLs, possibly relative
    warnings: list[str] = field(default_factory=list)
    total_operations: int = 0  # before include/exclude


# ------------------------------------------------------------------------- parsing


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML read the way OpenAPI means it (YAML 1.2's core schema): no timestamps
    (``2024-01-01`` stays a string, as in JSON), and only true/false are booleans, so
    ``enum: [yes, no]`` or a property called ``on`` stay strings."""


_Loader.yaml_implicit_resolvers = {
    ch: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_document(text: str | bytes, hint: str = "") -> Any:
    """Parse JSON or YAML text. ``hint`` (a file name, URL or content type) picks the
    syntax whose error is reported; text starting with ``{`` is tried as JSON first."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    is_json, is_yaml = _syntax(hint)
    json_error: str | None = None
    if is_json or (not is_yaml and text.lstrip().startswith(("{", "["))):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            json_error = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if is_json:
                raise SpecError(json_error) from None
    try:
        doc = yaml.load(text, Loader=_Loader)  # a safe loader (no arbitrary objects)
    except yaml.MarkedYAMLError as exc:
        if json_error is not None:  # it looked like JSON: that error is the useful one
            raise SpecError(json_error) from None
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"invalid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}") from None
    return _plain(doc)


def _syntax(hint: str) -> tuple[bool, bool]:
    """(JSON?, YAML?) from a hint ``"[content-type ]location"``: the file extension
    wins, then the content type; neither means "look at the text"."""
    tokens = hint.lower().split()
    location = tokens[-1].split("?")[0].split("#")[0] if tokens else ""
    ctype = tokens[0] if len(tokens) > 1 else ""
    if location.endswith(".json"):
        return True, False
    if location.endswith((".yaml", ".yml")):
        return False, True
    return "json" in ctype, "yaml" in ctype


def _plain(doc: Any) -> Any:
    """YAML may give int keys (``200:``), dates or anchors that loop: make it JSON-shaped."""
    active: set[int] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, dict | list):
            if id(node) in active:
                raise SpecError("the YAML document refers to itself (a recursive anchor)")
            active.add(id(node))
            try:
                if isinstance(node, dict):
                    return {k if isinstance(k, str) else _key(k): walk(v) for k, v in node.items()}
                return [walk(v) for v in node]
            finally:
                active.discard(id(node))
        if isinstance(node, str | int | float | bool) or node is None:
            return node
        return str(node)

    return walk(doc)


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return "null" if key is None else str(key)


# ------------------------------------------------------------------------- naming

_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_ARG_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


def _shorten(name: str, limit: int = MAX_NAME) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9]}_{digest}"


def tool_name(operation_id: str | None, method: str, path: str) -> str:
    """The tool name for an operation, before de-duplication."""
    if operation_id and operation_id.strip():
        name = _NAME_BAD.sub("_", operation_id.strip())
    else:
        name = _NAME_BAD.sub("_", f"{method.lower()}_{path}").strip("_")
        name = re.sub("_{2,}", "_", name)
    return _shorten(name or "operation")


def _arg_name(name: str) -> str:
    """An inputSchema property name clients accept (``^[A-Za-z0-9_.-]{1,64}$``)."""
    clean = _ARG_BAD.sub("_", name)
    if clean != name:
        clean = clean.strip("_")
    return _shorten(clean or "param")


def _pointer_name(ref: str) -> str:
    return unquote(ref.rsplit("/", 1)[-1]).replace("~1", "/").replace("~0", "~") or ref


# ------------------------------------------------------------------------- schemas

# Keywords whose value is a schema / a map of schemas / a list of schemas.
_SUB = (
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
)
_SUB_MAP = ("properties", "patternProperties", "dependentSchemas")
_SUB_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_NUMBERS = ("minimum", "maximum", "multipleOf")
_COUNTS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
_STRINGS = ("title", "description", "format", "contentEncoding", "contentMediaType")
_BOOLS = ("uniqueItems", "readOnly", "writeOnly", "deprecated")
_PASS = ("default", "const")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Schemas:
    """Schema conversion with ``$ref`` inlining, memoized per (reference, direction)."""

    def __init__(self, doc: Any, version: int) -> None:
        self.doc = doc
        self.version = version  # 2, 30 or 31
        self._targets: dict[str, Any] = {}
        self._memo: dict[tuple[str, Mode, int, int | None], Any] = {}
        #: How many references deep to inline (None: all); set to shrink huge tools.
        self.max_depth: int | None = None
        self._deps_of: dict[str, list[str]] = {}
        self._scc: dict[str, int] = {}
        self._scc_count = 0
        self._recursive: set[int] = set()
        # (reference, its SCC, its level) of each reference being expanded
        self._current: list[tuple[str, int, int]] = []
        self._tarjan_index: dict[str, int] = {}

    # -- references --------------------------------------------------------
    def lookup(self, ref: str) -> Any:
        """The node a local reference points to; :class:`SpecError` when it does not."""
        found = self._targets.get(ref)
        if found is not None:
            return found
        if not ref.startswith("#"):
            raise SpecError(
                f"$ref {ref!r} points outside the document (only '#/...' references are supported)"
            )
        node = self.doc
        if ref not in ("#", "#/"):
            if not ref.startswith("#/"):
                raise SpecError(f"$ref {ref!r} is not a JSON pointer ('#/...')")
            for raw in ref[2:].split("/"):
                part = unquote(raw).replace("~1", "/").replace("~0", "~")
                if isinstance(node, dict) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    raise SpecError(f"$ref {ref!r} does not resolve")
        self._targets[ref] = node
        return node

    def deref(self, node: Any) -> Any:
        """Follow ``$ref`` chains on a non-schema object (parameter, response, body...)."""
        seen: list[str] = []
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise SpecError(f"$ref {ref!r} is circular ({' -> '.join([*seen, ref])})")
            seen.append(ref)
            node = self.lookup(ref)
        return node

    def _deps(self, ref: str) -> list[str]:
        deps = self._deps_of.get(ref)
        if deps is None:
            try:
                deps = list(dict.fromkeys(_refs_in(self.lookup(ref))))
            except SpecError:
                deps = []  # reported when it is expanded
            self._deps_of[ref] = deps
        return deps

    def _canonical(self, ref: str) -> str:
        """Skip aliases (a schema that is only ``{$ref: ...}``): ``A -> B`` expands as B."""
        seen = [ref]
        while True:
            node = self.lookup(ref)
            if not (
                isinstance(node, dict) and len(node) == 1 and isinstance(node.get("$ref"), str)
            ):
                return ref
            ref = node["$ref"]
            if ref in seen:
                raise SpecError(f"$ref {ref!r} is circular ({' -> '.join([*seen, ref])})")
            seen.append(ref)

    def _component_of(self, ref: str) -> int:
        """Strongly connected component of ``ref`` in the reference graph (Tarjan)."""
        if ref in self._scc:
            return self._scc[ref]
        index = self._tarjan_index
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        work: list[tuple[str, Iterator[str]]] = []

        def push(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            work.append((v, iter(self._deps(v))))

        push(ref)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    push(w)
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
                if low[v] == index[v]:
                    self._scc_count += 1
                    scc_id = self._scc_count
                    members = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        members.append(w)
                        self._scc[w] = scc_id
                        if w == v:
                            break
                    if len(members) > 1 or v in self._deps(v):
                        self._recursive.add(scc_id)
        return self._scc[ref]

    # -- conversion ----------------------------------------------------------
    def convert(self, node: Any, mode: Mode) -> Any:
        """A JSON Schema 2020-12 version of an OpenAPI schema, refs inlined."""
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            return {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            resolved = self._ref(ref, mode)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if siblings and isinstance(resolved, dict):
                extra = self._keywords(siblings, mode)
                return {**resolved, **extra} if extra else resolved
            return resolved
        return self._keywords(node, mode)

    def _ref(self, ref: str, mode: Mode) -> Any:
        """A reference, expanded. Inside a reference cycle (a strongly connected
        component of the reference graph) the schema entered is level 0: a reference to
        itself is a placeholder, one to another member is expanded at level 1, where
        every member is a placeholder. So each expansion depends only on (reference,
        direction, level), is memoized, and costs one pass over the document."""
        ref = self._canonical(ref)
        scc = self._component_of(ref)
        level = 0
        if self._current and scc in self._recursive:
            outer_ref, outer_scc, outer_level = self._current[-1]
            if outer_scc == scc:
                if outer_level >= 1 or outer_ref == ref:
                    return self._placeholder(ref)
                level = 1
        left = None if self.max_depth is None else self.max_depth - len(self._current)
        if left is not None and left <= 0:
            return self._placeholder(ref, "nested too deep")
        key = (ref, mode, level, left)
        done = self._memo.get(key)
        if done is not None:
            return done
        target = self.lookup(ref)
        self._current.append((ref, scc, level))
        try:
            result = self.convert(target, mode)
        finally:
            self._current.pop()
        self._memo[key] = result
        return result

    def _placeholder(self, ref: str, why: str = "recursive") -> dict[str, Any]:
        target = self.deref(self.lookup(ref))
        out: dict[str, Any] = {}
        if isinstance(target, dict):
            kind = self._type(target)
            if kind is not None:
                out["type"] = kind
        out["description"] = f"{_pointer_name(ref)} ({why}; not expanded)"
        return out

    def _type(self, node: Mapping[str, Any]) -> str | list[str] | None:
        raw = node.get("type")
        if raw == "file":
            raw = "string"
        if isinstance(raw, str):
            kinds = [raw] if raw in JSON_TYPES else []
        elif isinstance(raw, list):
            kinds = [t for t in dict.fromkeys(raw) if isinstance(t, str) and t in JSON_TYPES]
        else:
            return None
        if not kinds:
            return None
        if self._nullable(node) and "null" not in kinds:
            kinds.append("null")
        return kinds[0] if len(kinds) == 1 else kinds

    def _nullable(self, node: Mapping[str, Any]) -> bool:
        return node.get("nullable") is True or node.get("x-nullable") is True

    def _keywords(self, node: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind = self._type(node)
        if kind is not None:
            out["type"] = kind
        for key in _STRINGS:
            if isinstance(node.get(key), str):
                out[key] = node[key]
        for key in _BOOLS:
            if isinstance(node.get(key), bool):
                out[key] = node[key]
        for key in _PASS:
            if key in node:
                out[key] = node[key]
        for key in _NUMBERS:
            if _number(node.get(key)):
                out[key] = node[key]
        if "multipleOf" in out and out["multipleOf"] <= 0:
            del out["multipleOf"]
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[key] = value
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = node.get(key)
            if value is True and bound in out:  # OpenAPI 3.0 / Swagger 2.0 form
                out[key] = out.pop(bound)
            elif _number(value):
                out[key] = value
        pattern = node.get("pattern")
        if isinstance(pattern, str) and _valid_regex(pattern):
            out["pattern"] = pattern
        enum = node.get("enum")
        if isinstance(enum, list):
            out["enum"] = [*enum, None] if self._nullable(node) and None not in enum else enum
        examples = node.get("examples")
        if isinstance(examples, list):
            out["examples"] = examples
        elif "example" in node:
            out["examples"] = [node["example"]]
        required = node.get("required")
        if mode == "in" and isinstance(required, list):
            names = [r for r in dict.fromkeys(required) if isinstance(r, str)]
            if names:
                out["required"] = names
        for key in _SUB:
            if key in node:
                sub = node[key]
                if key == "additionalProperties" and sub is False and mode == "out":
                    continue
                if isinstance(sub, dict | bool):
                    out[key] = self.convert(sub, mode)
        for key in _SUB_MAP:
            sub_map = node.get(key)
            if isinstance(sub_map, dict):
                converted = {
                    name: self.convert(value, mode)
                    for name, value in sub_map.items()
                    if isinstance(value, dict | bool)
                    and (key != "patternProperties" or _valid_regex(name))
                }
                if key == "properties":
                    converted = self._drop_one_way(converted, out, mode)
                out[key] = converted
        for key in _SUB_LIST:
            subs = node.get(key)
            if isinstance(subs, list):
                out[key] = [self.convert(s, mode) for s in subs if isinstance(s, dict | bool)]
        items = node.get("items")
        if isinstance(items, dict | bool):
            out["items"] = self.convert(items, mode)
        elif isinstance(items, list):  # draft-4 tuple form
            out["prefixItems"] = [
                self.convert(s, mode) for s in items if isinstance(s, dict | bool)
            ]
        if self._nullable(node) and "type" not in out and out and "enum" not in out:
            return {"anyOf": [out, {"type": "null"}]}
        return out

    def _drop_one_way(
        self, props: dict[str, Any], out: dict[str, Any], mode: Mode
    ) -> dict[str, Any]:
        """readOnly properties are not sent; writeOnly ones are never received."""
        flag = "readOnly" if mode == "in" else "writeOnly"
        dropped = [n for n, s in props.items() if isinstance(s, dict) and s.get(flag) is True]
        if not dropped:
            return props
        if "required" in out:
            out["required"] = [r for r in out["required"] if r not in dropped]
            if not out["required"]:
                del out["required"]
        return {n: s for n, s in props.items() if n not in dropped}


def _refs_in(node: Any) -> Iterator[str]:
    """``$ref`` strings in schema positions of ``node`` (not inside enum/default/examples)."""
    todo = [node]
    while todo:
        cur = todo.pop()
        if not isinstance(cur, dict):
            continue
        ref = cur.get("$ref")
        if isinstance(ref, str):
            yield ref
        for key in _SUB:
            if key in cur:
                todo.append(cur[key])
        for key in _SUB_MAP:
            sub = cur.get(key)
            if isinstance(sub, dict):
                todo.extend(sub.values())
        for key in (*_SUB_LIST, "items"):
            sub = cur.get(key)
            if isinstance(sub, list):
                todo.extend(sub)
            elif key == "items":
                todo.append(sub)


_REGEX_OK: dict[str, bool] = {}


def _valid_regex(pattern: str) -> bool:
    ok = _REGEX_OK.get(pattern)
    if ok is None:
        try:
            re.compile(pattern)
            ok = True
        except (re.error, RecursionError, OverflowError):
            ok = False
        if len(_REGEX_OK) < 100_000:
            _REGEX_OK[pattern] = ok
    return ok


def _object_schema(schema: Any) -> dict[str, Any] | None:
    """``schema`` as a root ``outputSchema`` (``type: object``), or None if it is not one."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "object":
        return schema
    if isinstance(kind, list) and "object" in kind:
        return {**schema, "type": "object"}
    if kind is None:
        parts = schema.get("allOf")
        if "properties" in schema or (
            isinstance(parts, list) and parts and all(_object_schema(p) for p in parts)
        ):
            return {**schema, "type": "object"}
    return None


# ------------------------------------------------------------------------- media

_JSON_MEDIA = re.compile(r"^application/(?:[\w.+-]+\+)?json$|^[\w.+-]+/[\w.+-]*json$")


def _media(media_type: str) -> str:
    return media_type.split(";", 1)[0].strip().lower()


def is_json_media(media_type: str) -> bool:
    return bool(_JSON_MEDIA.match(_media(media_type)))


def _body_encoding(media_type: str) -> BodyEncoding | None:
    mt = _media(media_type)
    if is_json_media(mt) or mt in ("*/*", "application/*"):
        return "json"
    if mt == "application/x-www-form-urlencoded":
        return "form"
    if mt == "multipart/form-data":
        return "multipart"
    if mt.startswith("text/") or mt.endswith(("/xml", "+xml", "/yaml", "+yaml")):
        return "text"
    if "/" in mt:
        return "binary"
    return None


_BODY_PREFERENCE: dict[BodyEncoding, int] = {
    "json": 0,
    "form": 1,
    "multipart": 2,
    "text": 3,
    "binary": 4,
}


# ------------------------------------------------------------------------- conversion


def _version(doc: Any) -> tuple[int, str]:
    if not isinstance(doc, dict):
        raise SpecError("not an OpenAPI document: the top level is not a mapping")
    if "swagger" in doc:
        if str(doc["swagger"]).strip() not in ("2.0", "2"):
            raise SpecError(f"unsupported Swagger version {doc['swagger']!r} (2.0 is supported)")
        return 2, "2.0"
    raw = doc.get("openapi")
    if raw is None:
        raise SpecError(
            "not an OpenAPI document: it has neither an 'openapi' nor a 'swagger' field"
        )
    text = str(raw).strip()
    if re.match(r"^3\.0(\.|$)", text):
        return 30, text
    if re.match(r"^3\.[1-9]", text):
        return 31, text
    raise SpecError(
        f"unsupported OpenAPI version {text!r} (3.0, 3.1 and Swagger 2.0 are supported)"
    )


def _server_urls(servers: Any) -> list[str]:
    urls: list[str] = []
    if not isinstance(servers, list):
        return urls
    for server in servers:
        if not isinstance(server, dict) or not isinstance(server.get("url"), str):
            continue
        found = server.get("variables")
        variables: dict[str, Any] = found if isinstance(found, dict) else {}

        def default(m: re.Match[str], variables: dict[str, Any] = variables) -> str:
            var = variables.get(m.group(1))
            return str(var.get("default", "")) if isinstance(var, dict) else m.group(0)

        urls.append(_TEMPLATE.sub(default, server["url"]))
    return urls


def _swagger_servers(doc: Mapping[str, Any]) -> list[str]:
    host = doc.get("host") if isinstance(doc.get("host"), str) else ""
    base = doc.get("basePath") if isinstance(doc.get("basePath"), str) else ""
    if base and not base.startswith("/"):
        base = "/" + base
    schemes = [s for s in doc.get("schemes") or [] if s in ("http", "https")]
    if not host:
        return [base or "/"]
    if not schemes:
        return [f"//{host}{base}"]
    return [f"{scheme}://{host}{base}" for scheme in schemes]


def _matches(patterns: Iterable[str], *names: str | None) -> set[str]:
    """The patterns among ``patterns`` that match any of ``names``."""
    return {p for p in patterns for n in names if n is not None and fnmatch.fnmatchcase(n, p)}


def convert(
    doc: Any,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    fixed_headers: Iterable[str] = (),
) -> Conversion:
    """Turn a parsed OpenAPI/Swagger document into tools. Raises :class:`SpecError`.

    ``include``/``exclude`` filter by operationId or tool name (shell wildcards);
    ``fixed_headers`` are headers the gateway sets itself (config ``headers``): header
    parameters of those names are hidden from the tools.
    """
    version, version_text = _version(doc)
    info = doc.get("info") if isinstance(doc.get("info"), dict) else {}
    paths = doc.get("paths", {})
    if paths is None:
        paths = {}
    if not isinstance(paths, dict):
        raise SpecError("'paths' must be a mapping of path to operations")
    include = list(include)
    exclude = list(exclude)
    fixed = {h.lower() for h in fixed_headers}
    schemas = _Schemas(doc, version)
    builder = _Builder(doc, version, schemas, fixed)
    conv = Conversion(
        version=version_text,
        title=str(info.get("title") or "OpenAPI"),
        api_version=str(info.get("version") or "0"),
        tools=[],
        operations={},
        servers=_swagger_servers(doc)
        if version == 2
        else (_server_urls(doc.get("servers")) or ["/"]),
    )
    used: set[str] = set()
    shrunk: list[str] = []
    hit: set[str] = set()
    errors: list[str] = []
    for path, raw_item in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            conv.warnings.append(f"path {path!r} does not start with '/'; skipped")
            continue
        try:
            item = schemas.deref(raw_item)
        except SpecError as exc:
            errors.append(f"{path}: {exc}")
            continue
        if not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            conv.total_operations += 1
            op_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
            name = _unique(tool_name(op_id, method, path), used)
            if include:
                matched = _matches(include, op_id, name)
                hit |= matched
                if not matched:
                    continue
            if exclude and _matches(exclude, op_id, name):
                continue
            try:
                tool, operation = builder.operation(name, op_id, method, path, item, op)
                if len(orjson.dumps(tool)) > MAX_TOOL_BYTES:
                    tool, operation = _shrink(
                        builder, tool, operation, (name, op_id, method, path, item, op)
                    )
                    shrunk.append(name)
            except SpecError as exc:
                errors.append(f"{name} ({method.upper()} {path}): {exc}")
                continue
            except RecursionError:
                errors.append(f"{name} ({method.upper()} {path}): schemas nest too deeply")
                continue
            conv.tools.append(tool)
            conv.operations[name] = operation
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{errors[0]}{more}")
    if shrunk:
        listed = ", ".join(shrunk[:5]) + (f" and {len(shrunk) - 5} more" if len(shrunk) > 5 else "")
        conv.warnings.append(
            f"{len(shrunk)} tool(s) over {MAX_TOOL_BYTES // 1024} KiB had their schemas "
            f"shortened (deepest references left as placeholders): {listed}"
        )
    for pattern in include:
        if pattern not in hit:
            conv.warnings.append(f"include: {pattern!r} matches no operation")
    return conv


def _shrink(
    builder: _Builder, tool: dict[str, Any], operation: Operation, args: tuple[Any, ...]
) -> tuple[dict[str, Any], Operation]:
    """Bring a tool under :data:`MAX_TOOL_BYTES`: drop its outputSchema (a description
    only), then inline fewer levels of references until it fits."""
    without_output = {k: v for k, v in tool.items() if k != "outputSchema"}
    operation = replace(operation, structured=False)
    if len(orjson.dumps(without_output)) <= MAX_TOOL_BYTES:
        return without_output, operation
    schemas = builder.schemas
    for depth in (12, 8, 6, 4, 3, 2, 1, 0):
        schemas.max_depth = depth
        try:
            tool, _ = builder.operation(*args)
        finally:
            schemas.max_depth = None
        tool.pop("outputSchema", None)
        if len(orjson.dumps(tool)) <= MAX_TOOL_BYTES:
            break
    return tool, operation


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate in used:
        n += 1
        suffix = f"_{n}"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
    used.add(candidate)
    return candidate


class _Builder:
    """Builds one tool and its :class:`Operation`."""

    def __init__(self, doc: Any, version: int, schemas: _Schemas, fixed: set[str]) -> None:
        self.doc = doc
        self.version = version
        self.schemas = schemas
        self.fixed = fixed

    def operation(
        self,
        name: str,
        op_id: str | None,
        method: str,
        path: str,
        item: Mapping[str, Any],
        op: Mapping[str, Any],
    ) -> tuple[dict[str, Any], Operation]:
        raw_params = self._merged_params(item, op)
        params: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (param, schema)
        body_param: dict[str, Any] | None = None
        form_params: list[dict[str, Any]] = []
        for p in raw_params:
            where = p.get("in")
            if where == "body" and self.version == 2:
                body_param = p
            elif where == "formData" and self.version == 2:
                form_params.append(p)
            elif where in ("path", "query", "header", "cookie"):
                if where == "header" and str(p["name"]).lower() in (IGNORED_HEADERS | self.fixed):
                    continue
                params.append((p, self._param_schema(p)))
        declared = {p["name"] for p, _ in params if p.get("in") == "path"}
        for var in _TEMPLATE.findall(path):
            if var not in declared:  # a template variable the document forgot to declare
                params.append(({"name": var, "in": "path", "required": True}, {"type": "string"}))
                declared.add(var)

        body, body_schema = self._body(op, body_param, form_params)
        args = _arg_names([(str(p["name"]), str(p["in"])) for p, _ in params], body is not None)

        properties: dict[str, Any] = {}
        required: list[str] = []
        table: list[Param] = []
        for (p, schema), arg in zip(params, args, strict=True):
            location: Location = p["in"]
            is_required = location == "path" or p.get("required") is True
            prop = dict(schema) if isinstance(schema, dict) else {}
            text = p.get("description") if isinstance(p.get("description"), str) else None
            if arg != p["name"]:
                where_text = f"{location.capitalize()} parameter '{p['name']}'."
                text = f"{where_text} {text}" if text else where_text
            if text:
                prop["description"] = text
            if p.get("deprecated") is True:
                prop["deprecated"] = True
            if "example" in p and "examples" not in prop:
                prop["examples"] = [p["example"]]
            properties[arg] = prop
            if is_required:
                required.append(arg)
            table.append(self._param(p, location, arg, is_required))
        if body is not None:
            properties[body.arg] = body_schema
            if body.required:
                required.append(body.arg)

        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = False

        output, accept = self._responses(op)
        tool: dict[str, Any] = {"name": name}
        summary = _string(op.get("summary"))
        if summary.strip():
            tool["title"] = summary.strip()
        tool["description"] = _description(op, method, path)
        tool["inputSchema"] = input_schema
        if output is not None:
            tool["outputSchema"] = output
        tool["annotations"] = _annotations(method, summary)
        servers = _server_urls(op.get("servers")) or _server_urls(item.get("servers"))
        operation = Operation(
            tool=name,
            operation_id=op_id,
            method=method.upper(),
            path=path,
            params=tuple(table),
            body=body,
            accept=accept,
            structured=output is not None,
            servers=tuple(servers) if self.version != 2 else (),
        )
        return tool, operation

    # -- parameters ----------------------------------------------------------
    def _merged_params(
        self, item: Mapping[str, Any], op: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for source in (item.get("parameters"), op.get("parameters")):
            if not isinstance(source, list):
                continue
            for raw in source:
                p = self.schemas.deref(raw)
                if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                    raise SpecError("a parameter has no 'name'")
                if not isinstance(p.get("in"), str):
                    raise SpecError(f"parameter {p['name']!r} has no 'in'")
                merged[(p["name"], p["in"])] = p
        return list(merged.values())

    def _param_schema(self, p: Mapping[str, Any]) -> Any:
        if "schema" in p:
            return self.schemas.convert(p["schema"], "in")
        content = p.get("content")
        if isinstance(content, dict) and content:
            media = next(iter(content.values()))
            if isinstance(media, dict) and "schema" in media:
                return self.schemas.convert(media["schema"], "in")
            return {}
        if self.version == 2:  # type/format/items live on the parameter itself
            return self.schemas.convert(_swagger_param_schema(p), "in")
        return {}

    def _param(self, p: Mapping[str, Any], location: Location, arg: str, required: bool) -> Param:
        as_json = False
        if self.version == 2:
            style, explode = _collection_format(p.get("collectionFormat"), location)
        else:
            default_style = "form" if location in ("query", "cookie") else "simple"
            style = _string(p.get("style")) or default_style
            explode = p["explode"] if isinstance(p.get("explode"), bool) else style == "form"
            content = p.get("content")
            if "schema" not in p and isinstance(content, dict) and content:
                as_json = any(is_json_media(str(k)) for k in content)
        return Param(
            name=str(p["name"]),
            location=location,
            arg=arg,
            required=required,
            style=style,
            explode=explode,
            allow_reserved=p.get("allowReserved") is True,
            as_json=as_json,
        )

    # -- body ------------------------------------------------------------------
    def _body(
        self,
        op: Mapping[str, Any],
        body_param: Mapping[str, Any] | None,
        form_params: list[dict[str, Any]],
    ) -> tuple[Body | None, dict[str, Any]]:
        if self.version == 2:
            return self._swagger_body(op, body_param, form_params)
        raw = op.get("requestBody")
        if raw is None:
            return None, {}
        rb = self.schemas.deref(raw)
        if not isinstance(rb, dict) or not isinstance(rb.get("content"), dict) or not rb["content"]:
            return None, {}
        choices = [
            (mt, _body_encoding(mt), media)
            for mt, media in rb["content"].items()
            if isinstance(mt, str) and _body_encoding(mt) is not None
        ]
        if not choices:
            return None, {}
        mt, enc, media = min(choices, key=lambda c: _BODY_PREFERENCE[c[1]])  # type: ignore[index]
        assert enc is not None
        schema = (
            self.schemas.convert(media.get("schema", {}), "in") if isinstance(media, dict) else {}
        )
        description = rb.get("description") if isinstance(rb.get("description"), str) else None
        return self._finish_body(mt, enc, schema, rb.get("required") is True, description, set())

    def _swagger_body(
        self,
        op: Mapping[str, Any],
        body_param: Mapping[str, Any] | None,
        form_params: list[dict[str, Any]],
    ) -> tuple[Body | None, dict[str, Any]]:
        consumes = op.get("consumes") or self.doc.get("consumes") or []
        consumes = [c for c in consumes if isinstance(c, str)] if isinstance(consumes, list) else []
        if body_param is not None:
            mt = next(
                (c for c in consumes if is_json_media(c)),
                consumes[0] if consumes else "application/json",
            )
            enc = _body_encoding(mt) or "json"
            schema = self.schemas.convert(body_param.get("schema", {}), "in")
            description = body_param.get("description")
            return self._finish_body(
                mt,
                enc,
                schema,
                body_param.get("required") is True,
                description if isinstance(description, str) else None,
                set(),
            )
        if not form_params:
            return None, {}
        files = {str(p["name"]) for p in form_params if p.get("type") == "file"}
        media = [_media(c) for c in consumes]
        if files or (
            "multipart/form-data" in media and "application/x-www-form-urlencoded" not in media
        ):
            mt, enc = "multipart/form-data", "multipart"
        else:
            mt, enc = "application/x-www-form-urlencoded", "form"
        props: dict[str, Any] = {}
        required: list[str] = []
        for p in form_params:
            schema = self.schemas.convert(_swagger_param_schema(p), "in")
            if isinstance(p.get("description"), str):
                schema = {**schema, "description": p["description"]}
            props[str(p["name"])] = schema
            if p.get("required") is True:
                required.append(str(p["name"]))
        schema = {"type": "object", "properties": props}
        if required:
            schema["required"] = required
        return self._finish_body(mt, enc, schema, bool(required), None, files)  # type: ignore[arg-type]

    def _finish_body(
        self,
        mt: str,
        enc: BodyEncoding,
        schema: Any,
        required: bool,
        description: str | None,
        files: set[str],
    ) -> tuple[Body, dict[str, Any]]:
        out: dict[str, Any] = dict(schema) if isinstance(schema, dict) else {}
        if enc == "text":
            out = {"type": "string"}
        elif enc == "binary":
            out = {"type": "string", "contentEncoding": "base64", "contentMediaType": _media(mt)}
            description = f"{description + ' ' if description else ''}(base64-encoded {_media(mt)})"
        elif enc == "multipart":
            props = out.get("properties")
            if isinstance(props, dict):
                for prop, sub in props.items():
                    if prop in files or _is_file(sub):
                        files.add(prop)
                out["properties"] = {
                    prop: (
                        {
                            "type": "string",
                            "contentEncoding": "base64",
                            "description": "file content, base64-encoded",
                        }
                        if prop in files
                        else sub
                    )
                    for prop, sub in props.items()
                }
        if description:
            out["description"] = description
        return Body(media_type=mt, encoding=enc, required=required, files=frozenset(files)), out

    # -- responses ---------------------------------------------------------------
    def _responses(self, op: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        responses = op.get("responses")
        if not isinstance(responses, dict):
            return None, None
        ok = sorted(str(c) for c in responses if re.fullmatch(r"2(\d\d|XX)", str(c), re.I))
        produces = op.get("produces") or self.doc.get("produces") or []
        produces = [p for p in produces if isinstance(p, str)] if isinstance(produces, list) else []
        types: list[str] = []
        schemas: list[Any] = []
        all_json = bool(ok)
        for code in ok:
            resp = self.schemas.deref(responses[code])
            if not isinstance(resp, dict):
                all_json = False
                continue
            if self.version == 2:
                json_type = next((p for p in produces if is_json_media(p)), None)
                types.extend(produces)
                if "schema" in resp and (json_type or not produces):
                    schemas.append(resp["schema"])
                else:
                    all_json = False
                continue
            content = resp.get("content")
            if not isinstance(content, dict) or not content:
                all_json = False
                continue
            types.extend(str(k) for k in content)
            json_media = next(
                (m for k, m in content.items() if is_json_media(str(k)) and isinstance(m, dict)),
                None,
            )
            if json_media is None or "schema" not in json_media:
                all_json = False
            else:
                schemas.append(json_media["schema"])
        if self.version == 2 and not produces and schemas:
            types.append("application/json")
        accept = _accept(types)
        if not all_json or not schemas:
            return None, accept
        converted = [_object_schema(self.schemas.convert(s, "out")) for s in schemas]
        if any(c is None for c in converted):
            return None, accept
        return converted[0], accept


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _accept(types: list[str]) -> str | None:
    unique = list(dict.fromkeys(t.strip() for t in types if t.strip()))
    if not unique:
        return None
    json_types = [t for t in unique if is_json_media(t)]
    if json_types:
        return ", ".join(json_types) + ", */*;q=0.1"
    return ", ".join(unique)


def _is_file(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    if schema.get("format") in ("binary", "base64") or "contentMediaType" in schema:
        return True
    return schema.get("contentEncoding") == "base64"


def _swagger_param_schema(p: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "type",
        "format",
        "items",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "multipleOf",
        "x-nullable",
    )
    schema = {k: p[k] for k in keys if k in p}
    if schema.get("type") == "file":
        schema = {"type": "string", "format": "binary"}
    return schema


def _collection_format(fmt: Any, location: Location) -> tuple[str, bool]:
    if fmt == "multi":
        return "form", True
    if fmt == "ssv":
        return "spaceDelimited", False
    if fmt == "pipes":
        return "pipeDelimited", False
    if fmt == "tsv":
        return "tabDelimited", False
    return ("form" if location in ("query", "cookie") else "simple"), False


def _arg_names(params: list[tuple[str, str]], has_body: bool) -> list[str]:
    """inputSchema property names for (name, location) pairs, with no collisions."""
    base = [_arg_name(name) for name, _ in params]
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    if has_body:
        counts["body"] = counts.get("body", 0) + 1
    taken = {"body"} if has_body else set()
    out: list[str] = []
    for b, (_, location) in zip(base, params, strict=True):
        candidate = b if counts[b] == 1 else _shorten(f"{b}__{location}")
        final, n = candidate, 1
        while final in taken:
            n += 1
            final = _shorten(f"{candidate}_{n}")
        taken.add(final)
        out.append(final)
    return out


def _description(op: Mapping[str, Any], method: str, path: str) -> str:
    parts: list[str] = []
    for key in ("summary", "description"):
        text = op.get(key)
        if isinstance(text, str) and text.strip() and text.strip() not in parts:
            parts.append(text.strip())
    if not parts:
        parts.append(f"{method.upper()} {path}")
    text = "\n\n".join(parts)
    return f"Deprecated. {text}" if op.get("deprecated") is True else text


def _annotations(method: str, summary: str) -> dict[str, Any]:
    m = method.upper()
    notes: dict[str, Any] = {}
    if summary.strip():
        notes["title"] = summary.strip()
    notes["readOnlyHint"] = m in ("GET", "HEAD", "OPTIONS")
    if m == "DELETE":
        notes["destructiveHint"] = True
    if m in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE"):
        notes["idempotentHint"] = True
    notes["openWorldHint"] = True
    return notes
