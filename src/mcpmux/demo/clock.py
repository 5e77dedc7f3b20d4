"""Demo server "mcpmux-demo-clock": stateless tools that exercise structured output and progress.

Run with ``python -m mcpmux.demo.clock``; speaks MCP over stdio.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcpmux.demo.stdio_server import Ctx, Json, StdioServer, ToolError, text_result

MAX_SLEEP = 30
ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
)

server = StdioServer("mcpmux-demo-clock")


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC  # works even where no tz database is installed
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ToolError(f"unknown timezone: {name!r}") from exc


def _number(args: Json, key: str) -> float:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"{key!r} must be a number")
    return value


@server.tool(
    "now",
    "Current time as ISO 8601 in an IANA timezone (default UTC).",
    {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"}
        },
    },
    outputSchema={
        "type": "object",
        "properties": {"iso": {"type": "string"}, "timezone": {"type": "string"}},
        "required": ["iso", "timezone"],
    },
    annotations={"readOnlyHint": True},
)
async def now(args: Json, ctx: Ctx) -> Json:
    name = args.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolError("'timezone' must be a string")
    iso = datetime.now(_zone(name)).isoformat()
    return text_result(iso, {"iso": iso, "timezone": name})


@server.tool(
    "add",
    "Add two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
    outputSchema={"type": "object", "properties": {"sum": {"type": "number"}}, "required": ["sum"]},
    annotations={"readOnlyHint": True},
)
async def add(args: Json, ctx: Ctx) -> Json:
    total = _number(args, "a") + _number(args, "b")
    return text_result(str(total), {"sum": total})


@server.tool(
    "sleep",
    f"Sleep up to {MAX_SLEEP} s, reporting progress every second when given a progressToken.",
    {
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_SLEEP}},
        "required": ["seconds"],
    },
)
async def sleep(args: Json, ctx: Ctx) -> Json:
    seconds = _number(args, "seconds")
    if not 0 <= seconds <= MAX_SLEEP:
        raise ToolError(f"'seconds' must be between 0 and {MAX_SLEEP}")
    for step in range(1, math.ceil(seconds) + 1):
        elapsed = min(step, seconds)
        await asyncio.sleep(elapsed - (step - 1))
        await ctx.progress(elapsed, seconds, f"{elapsed:g}/{seconds:g} s")
    await ctx.server.log("debug", f"slept {seconds:g} s")
    return text_result(f"slept {seconds:g} s")


@server.resource("clock://zones", "zones", "text/plain", "A few IANA timezone names for `now`.")
async def zones() -> str:
    return "\n".join(ZONES) + "\n"


def main() -> None:
    server.run()


if __name__ == "__main__":
    main()
