"""Exposed names every client accepts, and tool curation per target (issue 16).

Pure functions: the merged view built from catalogs, no gateway. Every exposed
name must match ``^[a-zA-Z0-9_-]{1,64}$`` and route back to exactly the target and
the name it gave; curation hides, renames and rewrites with a reason for each.
"""

from __future__ import annotations

import re
from typing import Any

from mcpmux.config import ToolCuration
from mcpmux.multiplexer.catalog import Route, TargetCatalog, build_view
from mcpmux.multiplexer.naming import client_name, prefixed_name

SAFE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def cat(*names: str, **extra: Any) -> TargetCatalog:
    c = TargetCatalog()
    c.items["tools"] = [{"name": n, "description": f"does {n}", **extra} for n in names]
    c.items["prompts"] = [{"name": n} for n in names]
    return c


def routes(view: Any) -> dict[str, Route]:
    return dict(view.tools)


def test_dotted_colon_and_spaced_names_become_safe_and_route_back() -> None:
    names = ["fs.read_file", "github:create_issue", "weird name/with*stuff", "ok-name_1"]
    view = build_view([("srv", cat(*names))], "always", 1)
    exposed = routes(view)
    assert set(exposed) == {"srv_fs_read_file", "srv_github_create_issue",
                            "srv_weird_name_with_stuff", "srv_ok-name_1"}
    assert {r.original for r in exposed.values()} == set(names)
    assert all(SAFE.match(n) for n in exposed)
    assert all(SAFE.match(n) for n in view.prompts)
    # The list shows the same names the routes know.
    assert [t["name"] for t in view.lists["tools"][0][1]] == list(exposed)


def test_long_names_are_cut_with_a_stable_hash() -> None:
    long = "a" * 40 + ".b" * 20
    view = build_view([("target-with-a-long-name", cat(long, long + "x"))], "always", 1)
    names = list(routes(view))
    assert len(names) == 2 and len(set(names)) == 2
    assert all(SAFE.match(n) and len(n) == 64 for n in names)
    assert view.tools[names[0]] == Route("target-with-a-long-name", long)
    assert prefixed_name("target-with-a-long-name", long) == names[0]  # stable
    assert client_name("x" * 64) == "x" * 64  # exactly 64 is kept as is


def test_names_that_become_equal_are_told_apart_whatever_the_order() -> None:
    first = build_view([("t", cat("a.b", "a_b", "a:b"))], "always", 1)
    second = build_view([("t", cat("a:b", "a_b", "a.b"))], "always", 1)
    assert routes(first) == routes(second)
    # The name that needed no change keeps it; the others get a hash of their own name.
    assert first.tools["t_a_b"] == Route("t", "a_b")
    others = {n: r.original for n, r in first.tools.items() if n != "t_a_b"}
    assert sorted(others.values()) == ["a.b", "a:b"]
    assert all(n.startswith("t_a_b-") and SAFE.match(n) for n in others)


def test_unprefixed_names_are_made_safe_too() -> None:
    view = build_view([("only", cat("k8s.pods.list"))], "conditional", 1)
    assert view.tools == {"k8s_pods_list": Route("only", "k8s.pods.list")}


def test_include_exclude_rename_and_override_with_reasons() -> None:
    rules = ToolCuration.model_validate({
        "include": ["get_*", "list_*", "delete_*"],
        "exclude": ["delete_*"],
        "rename": {"get_pod": "pod", "missing": "x"},
        "override": {"list_pods": {"description": "List pods (curated).",
                                    "annotations": {"readOnlyHint": True}}},
    })
    c = cat("get_pod", "list_pods", "delete_pod", "create_pod", annotations={"title": "t"})
    view = build_view([("k8s", c)], "always", 1, curation={"k8s": rules})
    assert routes(view) == {"k8s_pod": Route("k8s", "get_pod"), "k8s_list_pods": Route("k8s", "list_pods")}
    listed = {t["name"]: t for t in view.lists["tools"][0][1]}
    assert listed["k8s_list_pods"]["description"] == "List pods (curated)."
    assert listed["k8s_list_pods"]["annotations"] == {"title": "t", "readOnlyHint": True}
    assert listed["k8s_pod"]["description"] == "does get_pod"
    report = view.curation["k8s"]
    assert {h["tool"]: h["reason"] for h in report["hidden"]} == {
        "delete_pod": "excluded by 'delete_*'", "create_pod": "matches no 'include' glob"}
    assert report["renamed"] == [{"tool": "get_pod", "as": "pod", "reason": "rename"}]
    assert report["overridden"] == [{"tool": "list_pods", "fields": ["description", "annotations"]}]
    assert report["unused"] == [{"tool": "missing", "reason": "'rename' names no tool of this target"}]
    # Prompts are not curated by the tools section.
    assert "k8s_delete_pod" in view.prompts


def test_no_curation_leaves_everything_and_reports_nothing() -> None:
    view = build_view([("a", cat("x"))], "always", 1, curation={"a": ToolCuration()})
    assert routes(view) == {"a_x": Route("a", "x")} and view.curation == {}
