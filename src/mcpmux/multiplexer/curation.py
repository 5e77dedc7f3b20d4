"""Curation of one target's tools: which are shown, under which name, with which words.

Applied when the merged view is built, to the target's own tool names (before the
prefix), so a rename survives a change of prefix mode. What was hidden, renamed or
overridden is kept in a report with the reason, for ``/api/targets`` and the UI:
an operator must be able to see why a tool a client asks for is not there.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from ..config import ToolCuration

Report = dict[str, list[dict[str, Any]]]


def _first_match(name: str, globs: list[str]) -> str | None:
    return next((g for g in globs if fnmatch.fnmatchcase(name, g)), None)


def curate_tools(tools: list[dict[str, Any]], rules: ToolCuration) -> tuple[list[tuple[str, dict[str, Any]]], Report]:
    """``(original name, tool as shown)`` for each shown tool, and the report."""
    report: Report = {"hidden": [], "renamed": [], "overridden": [], "unused": []}
    shown: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for tool in tools:
        name = tool.get("name")
        if not isinstance(name, str):
            continue
        seen.add(name)
        if rules.include and _first_match(name, rules.include) is None:
            report["hidden"].append({"tool": name, "reason": "matches no 'include' glob"})
            continue
        glob = _first_match(name, rules.exclude)
        if glob is not None:
            report["hidden"].append({"tool": name, "reason": f"excluded by '{glob}'"})
            continue
        out = tool
        new = rules.rename.get(name)
        if new is not None:
            out = {**out, "name": new}
            report["renamed"].append({"tool": name, "as": new, "reason": "rename"})
        override = rules.override.get(name)
        if override is not None:
            out, fields = _overridden(out, override.description, override.title, override.annotations)
            report["overridden"].append({"tool": name, "fields": fields})
        shown.append((name, out))
    for key, kind in [*((k, "rename") for k in rules.rename), *((k, "override") for k in rules.override)]:
        if key not in seen:
            report["unused"].append({"tool": key, "reason": f"'{kind}' names no tool of this target"})
    return shown, report


def admits(name: str, rules: ToolCuration) -> bool:
    """Would a tool of this name be shown under this name? Decides whether a call to a
    name the target does not list may still go to it: a name that curation hides or
    renames must stay unknown, whatever the target would answer."""
    if rules.include and _first_match(name, rules.include) is None:
        return False
    return _first_match(name, rules.exclude) is None and name not in rules.rename


def _overridden(tool: dict[str, Any], description: str | None, title: str | None,
                annotations: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out, fields = dict(tool), []
    if description is not None:
        out["description"] = description
        fields.append("description")
    if title is not None:
        out["title"] = title
        fields.append("title")
    if annotations:
        given = tool.get("annotations")
        out["annotations"] = {**(given if isinstance(given, dict) else {}), **annotations}
        fields.append("annotations")
    return out, fields


def is_empty(report: Report) -> bool:
    return not any(report.values())
