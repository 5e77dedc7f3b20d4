"""The merged catalog: what each target offers, and the view clients are shown.

A target's catalog is fetched whole (every upstream page followed) when it
connects and whenever it says ``list_changed``; clients are served from the
merged ``View``, so a list never waits on a slow target and no upstream page
is dropped. The view is rebuilt only when a catalog changes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..config import ToolCuration
from ..jsonrpc import INVALID_PARAMS, RPCError
from ..protocol import KINDS, Kind
from .curation import Report, curate_tools
from .naming import (
    TemplateMatcher,
    client_name,
    disambiguated,
    prefixed_name,
    prefixed_uri,
    split_uri,
)

#: limits.max_uri_bytes when nothing else says.
DEFAULT_MAX_URI_BYTES = 8 * 1024

log = logging.getLogger("mcpmux.catalog")

@dataclass
class TargetCatalog:
    """Everything one target offers, as it sent it."""

    capabilities: dict[str, Any] = field(default_factory=dict)
    server_info: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None
    items: dict[Kind, list[dict[str, Any]]] = field(
        default_factory=lambda: {k: [] for k in KINDS}
    )
    #: 2026 caching hints per kind, as the target gave them: (ttlMs, cacheScope).
    cache: dict[Kind, tuple[int, str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.items.items()}


@dataclass(frozen=True, slots=True)
class Route:
    target: str
    original: str  # the name or URI as the target knows it


@dataclass
class View:
    """The union clients see, with the routes back to owners."""

    prefixed: bool = False
    #: kind -> [(target, items exposed to clients)], in target order.
    lists: dict[Kind, list[tuple[str, list[dict[str, Any]]]]] = field(
        default_factory=lambda: {k: [] for k in KINDS}
    )
    tools: dict[str, Route] = field(default_factory=dict)
    #: exposed tool name -> its definition (for Mcp-Param-* headers and schemas)
    tool_defs: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, Route] = field(default_factory=dict)
    resources: dict[str, Route] = field(default_factory=dict)
    #: original URI -> targets that list it (for URIs clients learned from content).
    original_uris: dict[str, list[str]] = field(default_factory=dict)
    #: (matcher of the exposed template, matcher of the original, route)
    templates: list[tuple[TemplateMatcher, TemplateMatcher, Route]] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)
    #: exposed template URI -> route (for completion/complete ref/resource).
    template_uris: dict[str, Route] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    #: target -> what its tool curation hid, renamed or overrode, and why.
    curation: dict[str, Report] = field(default_factory=dict)
    digests: dict[Kind, bytes] = field(default_factory=dict)
    max_uri_bytes: int = DEFAULT_MAX_URI_BYTES

    # -- routing ---------------------------------------------------------
    def route_uri(self, uri: str) -> Route | None:
        """Find the owner of a resource URI: listed, template-matched or prefix-parsed.

        Raises RPCError (-32602) for a URI over ``limits.max_uri_bytes`` and for one that
        templates of two targets match equally well (see ``_route_template``)."""
        if len(uri) > self.max_uri_bytes or len(uri.encode()) > self.max_uri_bytes:
            raise RPCError(
                INVALID_PARAMS,
                f"resource URI too long: {len(uri.encode())} bytes, the limit is "
                f"{self.max_uri_bytes} (limits.max_uri_bytes)",
            )
        route = self.resources.get(uri)
        if route is not None:
            return route
        if self.prefixed:
            parts = split_uri(uri)
            if parts is not None and parts[0] in self.targets:
                return Route(parts[0], parts[1])
        owners = self.original_uris.get(uri)
        if owners and len(owners) == 1:
            return Route(owners[0], uri)
        # A URI the client built from a template, or learned from a result's content.
        return self._route_template(uri)

    def _route_template(self, uri: str) -> Route | None:
        """The most specific matching template wins (most literal characters, then the
        longest literal prefix): a target listing ``{+any}`` must not capture URIs another
        target's ``files://{name}`` describes. Equally specific templates of two targets
        are refused as ambiguous rather than guessed (the prefixed URI is unambiguous)."""
        best: tuple[int, int] | None = None
        owners: list[str] = []
        for _, original, route in self.templates:
            if best is not None and original.specificity() < best:
                continue
            if not original.match(uri):
                continue
            score = original.specificity()
            if best is None or score > best:
                best, owners = score, [route.target]
            elif route.target not in owners:
                owners.append(route.target)
        if not owners:
            return None
        if len(owners) > 1:
            raise RPCError(
                INVALID_PARAMS,
                f"resource URI {uri[:200]!r} is ambiguous: templates of targets "
                + " and ".join(f"'{t}'" for t in owners)
                + " match it equally; use a prefixed URI",
                {"uri": uri[:200], "targets": owners},
            )
        return Route(owners[0], uri)

    def expose_uri(self, target: str, uri: str) -> str:
        return prefixed_uri(target, uri) if self.prefixed else uri

    # -- pagination ------------------------------------------------------
    def route_item(self, kind: Kind, item: dict[str, Any]) -> Route | None:
        """Where an item of the merged list goes (its target, and its name there)."""
        if kind == "tools":
            return self.tools.get(item.get("name"))  # type: ignore[arg-type]
        if kind == "prompts":
            return self.prompts.get(item.get("name"))  # type: ignore[arg-type]
        if kind == "resources":
            return self.resources.get(item.get("uri"))  # type: ignore[arg-type]
        return self.template_uris.get(item.get("uriTemplate"))  # type: ignore[arg-type]

    def page(
        self,
        kind: Kind,
        cursor: str | None,
        page_size: int,
        groups: list[tuple[str, list[dict[str, Any]]]] | None = None,
    ) -> tuple[list[Any], str | None]:
        """One page of the merged list (or of ``groups``, the list as one caller may see
        it); the cursor remembers each target's position in it."""
        if groups is None:
            groups = self.lists[kind]
        pending: list[list[Any]]
        if cursor is None:
            pending = [[t, 0] for t, _ in groups]
        else:
            pending = _decode_cursor(cursor, kind)
        by_target = dict(groups)
        # Targets that left since the cursor was made, or have nothing left to give, are
        # dropped up front: a cursor must never lead to an empty page.
        pending = [p for p in pending if p[1] < len(by_target.get(p[0], ()))]
        out: list[Any] = []
        i = 0
        while i < len(pending):
            if page_size and len(out) >= page_size:
                break
            target, offset = pending[i]
            items = by_target[target]
            end = len(items) if not page_size else min(len(items), offset + page_size - len(out))
            out.extend(items[offset:end])
            if end < len(items):
                pending[i] = [target, end]
                break
            i += 1
        rest = pending[i:]
        return out, (_encode_cursor(kind, rest) if rest else None)


def _encode_cursor(kind: str, pending: list[list[Any]]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": kind, "p": pending})).decode()


def _decode_cursor(cursor: str, kind: str) -> list[list[Any]]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        pending = data["p"]
        if data["k"] != kind or not all(
            isinstance(p, list)
            and len(p) == 2
            and isinstance(p[0], str)
            and type(p[1]) is int  # not bool
            and p[1] >= 0
            for p in pending
        ):
            raise ValueError
        return [list(p) for p in pending]
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise RPCError(INVALID_PARAMS, "invalid cursor: pass back a nextCursor this gateway gave") from None


def _named(target: str, items: list[tuple[str, dict[str, Any]]], prefixed: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """``(exposed, original, item)``: client-safe names, decided per target. When two
    items become the same name (``a.b`` and ``a_b``), the one that needed no change
    keeps it (else the smallest original), the other gets a hash suffix: the same
    names whatever order the target lists them in."""
    wanted = []
    for original, item in items:
        shown = item["name"]
        full = f"{target}_{shown}" if prefixed else shown
        wanted.append((client_name(full), full, original, item))
    owner: dict[str, tuple[bool, str]] = {}
    for exposed, full, original, _ in wanted:
        rank = (exposed != full, original)
        if exposed not in owner or rank < owner[exposed]:
            owner[exposed] = rank
    out = []
    for exposed, full, original, item in wanted:
        if owner[exposed] != (exposed != full, original):
            exposed = disambiguated(exposed, target, original)
        out.append((exposed, original, item))
    return out


def build_view(
    catalogs: list[tuple[str, TargetCatalog]], mode: str, configured: int,
    max_uri_bytes: int = DEFAULT_MAX_URI_BYTES, curation: dict[str, ToolCuration] | None = None,
) -> View:
    """Merge ready targets' catalogs. ``configured`` counts all targets, ready or not,
    so names do not change when one target goes down; ``curation``: each target's
    ``tools:`` section."""
    prefixed = mode == "always" or (mode == "conditional" and configured >= 2)
    view = View(prefixed=prefixed, max_uri_bytes=max_uri_bytes)
    for target, cat in catalogs:
        view.targets.add(target)
        for kind in ("tools", "prompts"):
            table = view.tools if kind == "tools" else view.prompts
            exposed_items = []
            listed = [(i["name"], i) for i in cat.items[kind] if isinstance(i.get("name"), str)]  # type: ignore[index]
            rules = (curation or {}).get(target)
            if kind == "tools" and rules is not None and rules != _NO_CURATION:
                listed, report = curate_tools(cat.items["tools"], rules)
                view.curation[target] = report
            for exposed, name, item in _named(target, listed, prefixed):
                if exposed in table:
                    other = table[exposed]
                    if other == Route(target, name):  # the target lists it twice
                        view.conflicts.append(f"{kind[:-1]} '{name}' is listed twice by target '{target}'; "
                                              "listed once")
                        log.warning("%s", view.conflicts[-1])
                        continue
                    exposed = _unique_name(table, target, item["name"])
                    view.conflicts.append(
                        f"{kind[:-1]} '{name}' of target '{target}' clashes with target "
                        f"'{other.target}'; exposed as '{exposed}'"
                    )
                    log.warning("%s", view.conflicts[-1])
                table[exposed] = Route(target, name)
                shown = item if exposed == item["name"] else {**item, "name": exposed}
                exposed_items.append(shown)
                if kind == "tools":
                    view.tool_defs[exposed] = shown
            view.lists[kind].append((target, exposed_items))  # type: ignore[index]
        res_items = []
        for item in cat.items["resources"]:
            uri = item.get("uri")
            if not isinstance(uri, str):
                continue
            exposed = prefixed_uri(target, uri) if prefixed else uri
            if exposed in view.resources:
                other = view.resources[exposed]
                exposed = prefixed_uri(target, uri)
                if exposed in view.resources:  # listed twice by this target
                    continue
                view.conflicts.append(
                    f"resource '{uri}' of target '{target}' clashes with target "
                    f"'{other.target}'; exposed as '{exposed}'"
                )
            view.resources[exposed] = Route(target, uri)
            view.original_uris.setdefault(uri, []).append(target)
            res_items.append(item if exposed == uri else {**item, "uri": exposed})
        view.lists["resources"].append((target, res_items))
        tpl_items = []
        for item in cat.items["resourceTemplates"]:
            tpl = item.get("uriTemplate")
            if not isinstance(tpl, str):
                continue
            exposed = prefixed_uri(target, tpl) if prefixed else tpl
            route = Route(target, tpl)
            view.templates.append((TemplateMatcher(exposed), TemplateMatcher(tpl), route))
            view.template_uris[exposed] = route
            tpl_items.append(item if exposed == tpl else {**item, "uriTemplate": exposed})
        view.lists["resourceTemplates"].append((target, tpl_items))
    for kind in KINDS:
        view.digests[kind] = orjson.dumps(view.lists[kind])
    return view


_NO_CURATION = ToolCuration()


def _unique_name(table: dict[str, Route], target: str, name: str) -> str:
    """A clashing name, prefixed; if even that is taken (another target lists a tool
    literally called ``b_x``), numbered, so every exposed name stays unique and routable
    (an unchecked fallback would overwrite an entry and leave one of the two unreachable).
    """
    exposed = prefixed_name(target, name)
    n = 2
    while exposed in table:
        exposed = prefixed_name(target, f"{name}_{n}")
        n += 1
    return exposed
