"""The merged catalog and its names, as pure functions: no gateway, no I/O.

Covers prefix modes, clashes (reported, never dropped), the 64-character name limit,
URI prefixes, template matching and merged-list pagination.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest

from mcpmux.jsonrpc import INVALID_PARAMS, RPCError
from mcpmux.multiplexer.catalog import KINDS, Route, TargetCatalog, View, build_view
from mcpmux.multiplexer.naming import (
    MAX_NAME,
    prefixed_name,
    prefixed_uri,
    split_uri,
    template_regex,
)


def cat(
    tools: list[str] = (),  # type: ignore[assignment]
    prompts: list[str] = (),  # type: ignore[assignment]
    resources: list[str] = (),  # type: ignore[assignment]
    templates: list[str] = (),  # type: ignore[assignment]
) -> TargetCatalog:
    c = TargetCatalog()
    c.items["tools"] = [{"name": n, "description": f"tool {n}", "x-extra": [1]} for n in tools]
    c.items["prompts"] = [{"name": n} for n in prompts]
    c.items["resources"] = [{"uri": u, "name": u} for u in resources]
    c.items["resourceTemplates"] = [{"uriTemplate": t, "name": t} for t in templates]
    return c


def names(view: View, kind: str = "tools") -> list[str]:
    key = "uri" if kind == "resources" else "uriTemplate" if kind == "resourceTemplates" else "name"
    return [i[key] for _, items in view.lists[kind] for i in items]  # type: ignore[index]


# ------------------------------------------------------------------------ prefix modes


def test_conditional_single_target_is_not_prefixed() -> None:
    view = build_view([("clock", cat(["now"], ["p"]))], "conditional", configured=1)
    assert not view.prefixed
    assert names(view) == ["now"]
    assert names(view, "prompts") == ["p"]
    assert view.tools["now"] == Route("clock", "now")


def test_conditional_prefixes_with_two_targets_even_if_one_is_down() -> None:
    # Names must not change when a second target goes down: ``configured`` counts it.
    view = build_view([("clock", cat(["now"]))], "conditional", configured=2)
    assert view.prefixed
    assert names(view) == ["clock_now"]
    both = build_view([("clock", cat(["now"])), ("notes", cat(["add"], ["sum"]))], "conditional", 2)
    assert names(both) == ["clock_now", "notes_add"]
    assert names(both, "prompts") == ["notes_sum"]
    assert both.tools["notes_add"] == Route("notes", "add")
    assert both.prompts["notes_sum"] == Route("notes", "sum")


def test_always_prefixes_a_single_target() -> None:
    view = build_view([("clock", cat(["now"], resources=["clock://zones"]))], "always", 1)
    assert names(view) == ["clock_now"]
    assert names(view, "resources") == ["clock+clock://zones"]


def test_never_keeps_server_names() -> None:
    view = build_view([("a", cat(["x"])), ("b", cat(["y"]))], "never", 2)
    assert not view.prefixed
    assert names(view) == ["x", "y"]
    assert view.conflicts == []


def test_items_pass_through_untouched_apart_from_the_name() -> None:
    view = build_view([("a", cat(["x"])), ("b", cat(["y"]))], "always", 2)
    item = view.lists["tools"][0][1][0]
    assert item == {"name": "a_x", "description": "tool x", "x-extra": [1]}


@pytest.mark.parametrize("kind", ["tools", "prompts"])
def test_never_mode_clash_is_reported_not_dropped(kind: str) -> None:
    a = cat(["search", "only-a"]) if kind == "tools" else cat(prompts=["search", "only-a"])
    b = cat(["search"]) if kind == "tools" else cat(prompts=["search"])
    view = build_view([("a", a), ("b", b)], "never", 2)
    exposed = names(view, kind)
    assert len(exposed) == 3, exposed  # nothing silently dropped
    assert "search" in exposed and "b_search" in exposed
    table = view.tools if kind == "tools" else view.prompts
    assert table["search"] == Route("a", "search")
    assert table["b_search"] == Route("b", "search")
    assert len(view.conflicts) == 1
    msg = view.conflicts[0]
    assert "'search'" in msg and "'a'" in msg and "'b'" in msg and "b_search" in msg


def test_never_mode_resource_clash_is_reported_not_dropped() -> None:
    view = build_view(
        [("a", cat(resources=["file:///x"])), ("b", cat(resources=["file:///x"]))], "never", 2
    )
    assert names(view, "resources") == ["file:///x", "b+file:///x"]
    assert view.resources["file:///x"] == Route("a", "file:///x")
    assert view.resources["b+file:///x"] == Route("b", "file:///x")
    assert view.route_uri("b+file:///x") == Route("b", "file:///x")
    assert len(view.conflicts) == 1 and "'a'" in view.conflicts[0] and "'b'" in view.conflicts[0]


def test_items_without_a_name_are_skipped_not_fatal() -> None:
    c = cat(["ok"])
    c.items["tools"] += [{"description": "no name"}, {"name": 5}]
    view = build_view([("a", c)], "always", 1)
    assert names(view) == ["a_ok"]


# ------------------------------------------------------------------ 64-character names


def test_short_names_are_not_shortened() -> None:
    assert prefixed_name("t", "x" * (MAX_NAME - 2)) == "t_" + "x" * (MAX_NAME - 2)  # exactly 64


@pytest.mark.parametrize("length", [MAX_NAME - 1, MAX_NAME, MAX_NAME + 1, 100, 500])
def test_long_names_are_shortened_to_64(length: int) -> None:
    name = "n" * length
    out = prefixed_name("target", name)
    assert len(out) <= MAX_NAME
    assert out == prefixed_name("target", name)  # stable across calls (and restarts)
    assert out.startswith("target_")


def test_shortened_names_stay_distinct_and_route_back() -> None:
    common = "get_" + "very_long_operation_name_" * 3
    tools = [common + "alpha", common + "beta"]
    view = build_view([("api", cat(tools)), ("other", cat(["x"]))], "conditional", 2)
    exposed = names(view)
    assert len(set(exposed)) == 3
    for original in tools:
        matches = [n for n, r in view.tools.items() if r == Route("api", original)]
        assert len(matches) == 1 and len(matches[0]) <= MAX_NAME


def test_long_target_name_still_fits() -> None:
    target = "t" * 63  # the longest DNS-1123 label
    out = prefixed_name(target, "tool")
    assert len(out) <= MAX_NAME


def test_shortened_names_use_only_tool_name_characters() -> None:
    out = prefixed_name("target", "n" * 100)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", out), out


# ------------------------------------------------------------------------ URI prefixes

URIS = [
    "test://static-text",
    "file:///tmp/a%20b.txt",
    "git+ssh://host/repo",  # a '+' of its own
    "https://example.com/a?b=c+d#frag",
    "urn:isbn:0451450523",
    "notes://note/with+plus",
]


@pytest.mark.parametrize("uri", URIS)
def test_uri_prefix_round_trips(uri: str) -> None:
    assert split_uri(prefixed_uri("everything", uri)) == ("everything", uri)


@pytest.mark.parametrize("uri", URIS)
def test_prefixed_resources_route_back_to_the_original(uri: str) -> None:
    view = build_view([("everything", cat(resources=[uri])), ("other", cat())], "conditional", 2)
    exposed = prefixed_uri("everything", uri)
    assert names(view, "resources") == [exposed]
    assert view.route_uri(exposed) == Route("everything", uri)
    # A prefixed URI of a target that is not in the view is not guessed at.
    assert view.route_uri(prefixed_uri("nobody", uri)) is None


def test_split_uri_rejects_what_is_not_a_prefix() -> None:
    assert split_uri("https://example.com/a+b") is None  # '+' after the scheme
    assert split_uri("no-plus-here") is None


def test_unprefixed_view_routes_original_uris() -> None:
    view = build_view([("a", cat(resources=["clock://zones"]))], "conditional", 1)
    assert view.route_uri("clock://zones") == Route("a", "clock://zones")
    assert view.route_uri("clock://other") is None


# ------------------------------------------------------------------- template matching


@pytest.mark.parametrize(
    ("template", "uri", "matches"),
    [
        ("notes://note/{title}", "notes://note/hello", True),
        ("notes://note/{title}", "notes://note/hello%20you", True),
        ("notes://note/{title}", "notes://note/a/b", False),
        ("notes://note/{title}", "notes://note/hello/extra", False),
        ("notes://note/{title}", "notes://notes/hello", False),
        ("test://template/{id}/data", "test://template/42/data", True),
        ("test://template/{id}/data", "test://template/42/other", False),
        ("file:///{+path}", "file:///a/b/c.txt", True),
        ("search://q{?q,lang}", "search://q?q=x&lang=en", True),
        ("search://q{?q,lang}", "search://q", True),
        ("a.b://{x}", "aXb://1", False),  # literal parts are escaped
        ("db://{schema}.{table}", "db://public.users", True),
    ],
)
def test_template_regex(template: str, uri: str, matches: bool) -> None:
    assert bool(template_regex(template).match(uri)) is matches


def test_template_uris_route_to_their_target() -> None:
    notes = cat(templates=["notes://note/{title}"])
    clock = cat(templates=["clock://zone/{name}"])
    view = build_view([("notes", notes), ("clock", clock)], "conditional", 2)
    assert names(view, "resourceTemplates") == [
        "notes+notes://note/{title}",
        "clock+clock://zone/{name}",
    ]
    assert view.route_uri("notes+notes://note/hi") == Route("notes", "notes://note/hi")
    assert view.template_uris["clock+clock://zone/{name}"] == Route("clock", "clock://zone/{name}")
    # Unprefixed: an original URI built from a template finds its owner.
    solo = build_view([("notes", notes)], "conditional", 1)
    assert solo.route_uri("notes://note/hi") == Route("notes", "notes://note/hi")
    assert solo.route_uri("other://note/hi") is None


# -------------------------------------------------------------------------- pagination

SIZES = {"a": 5, "b": 0, "c": 3, "d": 1, "e": 7, "f": 0}  # empty ones mid and last


def big_view() -> View:
    catalogs = [(t, cat([f"{t}{i}" for i in range(n)])) for t, n in SIZES.items()]
    return build_view(catalogs, "always", len(catalogs))


def walk(view: View, page_size: int, kind: str = "tools") -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        items, cursor = view.page(kind, cursor, page_size)  # type: ignore[arg-type]
        pages.append(items)
        if cursor is None:
            return pages
        assert isinstance(cursor, str)
    raise AssertionError("pagination never ended")


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 100])
def test_pages_never_drop_or_duplicate(page_size: int) -> None:
    view = big_view()
    full = names(view)
    assert len(full) == sum(SIZES.values())
    pages = walk(view, page_size)
    flat = [i["name"] for p in pages for i in p]
    assert flat == full  # everything, once, in order
    assert all(0 < len(p) <= page_size for p in pages), [len(p) for p in pages]  # no empty page
    assert all(len(p) == page_size for p in pages[:-1])


def test_page_size_zero_is_everything_at_once() -> None:
    view = big_view()
    items, cursor = view.page("tools", None, 0)
    assert cursor is None
    assert [i["name"] for i in items] == names(view)


def test_empty_view_is_one_empty_page() -> None:
    assert View().page("tools", None, 3) == ([], None)


def test_target_leaving_mid_walk_drops_only_its_items() -> None:
    view = big_view()
    first, cursor = view.page("tools", None, 4)  # a0..a3
    assert cursor is not None
    # Target 'c' goes down between pages; the client keeps its cursor.
    left = build_view(
        [(t, cat([f"{t}{i}" for i in range(n)])) for t, n in SIZES.items() if t != "c"], "always", 5
    )
    rest: list[str] = []
    while cursor:
        items, cursor = left.page("tools", cursor, 4)
        assert items, "a cursor led to an empty page"
        rest += [i["name"] for i in items]
    seen = [i["name"] for i in first] + rest
    expected = [n for n in names(view) if not n.startswith("c_")]
    assert seen == expected


def test_cursor_of_one_kind_is_refused_for_another() -> None:
    view = build_view([("a", cat(["x", "y"], ["p", "q"]))], "always", 1)
    _, cursor = view.page("tools", None, 1)
    assert cursor is not None
    with pytest.raises(RPCError) as err:
        view.page("prompts", cursor, 1)
    assert err.value.code == INVALID_PARAMS


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "é",
        "%%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        _b64([]),
        _b64("tools"),
        _b64({"k": "tools"}),
        _b64({"k": "tools", "p": 5}),
        _b64({"k": "tools", "p": [["a"]]}),
        _b64({"k": "tools", "p": [["a", "x"]]}),
        _b64({"k": "tools", "p": [[1, 2]]}),
        *(
            pytest.param(
                _b64({"k": "tools", "p": [["a", bad]]}),
                id=f"offset-{bad}",
            )
            for bad in (-1, True)
        ),
    ],
)
def test_invalid_cursor_is_invalid_params(cursor: str) -> None:
    with pytest.raises(RPCError) as err:
        big_view().page("tools", cursor, 3)
    assert err.value.code == INVALID_PARAMS
    assert "cursor" in err.value.message


def test_every_kind_paginates() -> None:
    c = cat(
        [f"t{i}" for i in range(3)],
        [f"p{i}" for i in range(3)],
        [f"r://{i}" for i in range(3)],
        [f"r://{{x}}/{i}" for i in range(3)],
    )
    view = build_view([("a", c), ("b", c)], "always", 2)
    for kind in KINDS:
        pages = walk(view, 4, kind)
        assert sum(len(p) for p in pages) == 6, kind
