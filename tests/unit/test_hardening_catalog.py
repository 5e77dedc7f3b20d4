"""Routing that hostile catalogs cannot break: linear template matching, bounded URIs,
the most specific template wins, and every exposed name is unique and routable."""

from __future__ import annotations

import random
import time

import pytest

from mcpmux.jsonrpc import INVALID_PARAMS, RPCError
from mcpmux.multiplexer.catalog import Route, TargetCatalog, View, build_view
from mcpmux.multiplexer.naming import TemplateMatcher, template_regex


def cat(tools: list[str] = (), prompts: list[str] = (), templates: list[str] = ()) -> TargetCatalog:  # type: ignore[assignment]
    c = TargetCatalog()
    c.items["tools"] = [{"name": n, "description": n} for n in tools]
    c.items["prompts"] = [{"name": n} for n in prompts]
    c.items["resourceTemplates"] = [{"uriTemplate": t, "name": t} for t in templates]
    return c


def names(view: View, kind: str = "tools") -> list[str]:
    return [i["name"] for _, items in view.lists[kind] for i in items]  # type: ignore[index]


# ---------------------------------------------------------------- linear matching

TEMPLATES = ["notes://note/{title}", "test://template/{id}/data", "file:///{+path}",
             "search://q{?q,lang}", "a.b://{x}", "db://{schema}.{table}", "files://{name}.{ext}",
             "{+any}", "x{#frag}y", "p/{a}/{b}.{c}{?q}"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_matcher_accepts_exactly_what_the_regex_accepts(template: str) -> None:
    rng = random.Random(template)
    m, r = TemplateMatcher(template), template_regex(template)
    for _ in range(2000):
        uri = "".join(rng.choice("ab./?#&=q:fileotsdnxy") for _ in range(rng.randint(0, 14)))
        if rng.random() < 0.5:
            uri = template.split("{")[0] + uri
        assert m.match(uri) == bool(r.match(uri)), uri


def _adversarial(size: int) -> str:
    return "files://" + "a." * (size // 2) + "/"  # every dot a candidate split; fails at the end


def test_matching_is_linear_no_state_growth_with_uri_length() -> None:
    """Timing-free: the DFA built for a 2 kB URI serves a 200 kB one without a single new
    state or transition, so the work per character is one cached lookup."""
    m = TemplateMatcher("files://{name}.{ext}")
    assert m.match(_adversarial(2_000)) is False
    states, transitions = len(m._sets), len(m._trans)
    assert m.match(_adversarial(200_000)) is False
    assert (len(m._sets), len(m._trans)) == (states, transitions)
    assert states < 20


def test_200kb_uri_costs_about_100_times_a_2kb_one() -> None:
    m = TemplateMatcher("files://{name}.{ext}")

    def best(uri: str) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            m.match(uri)
            times.append(time.perf_counter() - t0)
        return min(times)

    small, big = best(_adversarial(2_000)), best(_adversarial(200_000))
    # Linear is ~100x; the regex it replaces is ~10,000x. Generous for a loaded machine.
    assert big < small * 1000, (small, big)


def test_overlong_uri_is_invalid_params_with_the_limit() -> None:
    view = build_view([("a", cat(templates=["files://{name}.{ext}"]))], "never", 1)
    view.max_uri_bytes = 8192
    with pytest.raises(RPCError) as info:
        view.route_uri("files://" + "a." * 12_000)
    assert info.value.code == INVALID_PARAMS
    assert "8192" in info.value.message and "max_uri_bytes" in info.value.message
    assert view.route_uri("files://x.txt") == Route("a", "files://x.txt")


# ----------------------------------------------------------- most specific template


def test_catch_all_listed_first_does_not_capture_other_targets_uris() -> None:
    view = build_view([("grabby", cat(templates=["{+any}"])),
                       ("files", cat(templates=["files://{name}"]))], "conditional", 2)
    assert view.route_uri("files://report") == Route("files", "files://report")
    assert view.route_uri("other://x") == Route("grabby", "other://x")


def test_more_literal_characters_win_whatever_the_order() -> None:
    for order in (1, -1):
        targets = [("wide", cat(templates=["files://{path}"])),
                   ("docs", cat(templates=["files://docs-{name}"]))][::order]
        view = build_view(targets, "never", 2)
        assert view.route_uri("files://docs-a") == Route("docs", "files://docs-a")
        assert view.route_uri("files://x") == Route("wide", "files://x")


def test_equally_specific_templates_of_two_targets_are_ambiguous() -> None:
    view = build_view([("a", cat(templates=["db://{table}"])),
                       ("b", cat(templates=["db://{name}"]))], "never", 2)
    with pytest.raises(RPCError) as info:
        view.route_uri("db://users")
    assert info.value.code == INVALID_PARAMS
    assert "'a'" in info.value.message and "'b'" in info.value.message and "ambiguous" in info.value.message
    # The prefixed URI stays unambiguous when the view is prefixed.
    pre = build_view([("a", cat(templates=["db://{table}"])),
                      ("b", cat(templates=["db://{name}"]))], "always", 2)
    assert pre.route_uri("b+db://users") == Route("b", "db://users")


# -------------------------------------------------------------- unique exposed names


@pytest.mark.parametrize("kind", ["tools", "prompts"])
def test_never_mode_prefixed_fallback_that_is_taken_gets_a_unique_name(kind: str) -> None:
    def c(ns: list[str]) -> TargetCatalog:
        return cat(ns) if kind == "tools" else cat(prompts=ns)

    view = build_view([("a", c(["search", "b_search"])), ("b", c(["search"]))], "never", 2)
    exposed = names(view, kind)
    assert len(exposed) == len(set(exposed)) == 3, exposed
    table = view.tools if kind == "tools" else view.prompts
    assert table["search"] == Route("a", "search")
    assert table["b_search"] == Route("a", "b_search")
    third = next(n for n in exposed if n not in ("search", "b_search"))
    assert table[third] == Route("b", "search")
    assert len(view.conflicts) == 1 and third in view.conflicts[0]


def test_a_name_listed_twice_by_one_target_is_listed_once() -> None:
    view = build_view([("a", cat(["x", "x"]))], "always", 1)
    assert names(view) == ["a_x"]
    assert view.conflicts and "twice" in view.conflicts[0]
