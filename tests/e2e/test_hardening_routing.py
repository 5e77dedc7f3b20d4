"""Routing against hostile catalogs, through a real gateway: a URI built to make template
matching quadratic, and tool names that clash with ``prefix: never``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from tests.peers.hostile import HostileHttpServer
from tests.support.gateway import run_gateway
from tests.support.mcp_http import RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")


def adversarial(size: int) -> str:
    return "files://" + "a." * (size // 2) + "/"  # matches no template; every dot a split


async def test_long_uris_neither_block_the_gateway_nor_pass_the_limit(tmp_path: Path) -> None:
    with HostileHttpServer(templates=["files://{name}.{ext}"]) as peer:
        target = {"name": "files", "http": {"url": peer.url}}
        config = {"limits": {"max_uri_bytes": 1024 * 1024}, "targets": [CLOCK, target]}
        with run_gateway(config, tmp_path) as gw:
            async with RawClient(gw.mcp_url, 60) as c, RawClient(gw.mcp_url, 60) as other:
                await c.initialize()
                await other.initialize()
                ok = await c.rpc("resources/read", {"uri": "files://report.txt"})
                assert "report.txt" in ok["result"]["contents"][0]["text"], ok
                started = time.monotonic()
                read = asyncio.create_task(c.rpc("resources/read", {"uri": adversarial(200_000)}))
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                pong = await other.call("clock_add", {"a": 1, "b": 1})
                other_took = time.monotonic() - t0
                resp = await asyncio.wait_for(read, 30)
                took = time.monotonic() - started
        assert pong["result"]["structuredContent"] == {"sum": 2}, pong
        assert resp["error"]["code"] == -32602 and "unknown resource" in resp["error"]["message"], str(resp)[:300]
        # The quadratic regex needed minutes for this URI (5.3 s for 24 kB).
        assert took < 5 and other_took < 2, (took, other_took)
    print(f"200 kB adversarial URI routed in {took * 1000:.0f} ms; another client's call took {other_took * 1000:.0f} ms")


async def test_uri_over_the_default_limit_is_refused_clearly(tmp_path: Path) -> None:
    with HostileHttpServer(templates=["files://{name}.{ext}"]) as peer:
        with run_gateway({"targets": [{"name": "files", "http": {"url": peer.url}}]}, tmp_path) as gw:
            async with RawClient(gw.mcp_url, 60) as c:
                await c.initialize()
                started = time.monotonic()
                resp = await c.rpc("resources/read", {"uri": adversarial(24_000)})
                took = time.monotonic() - started
    err = resp["error"]
    assert err["code"] == -32602 and "max_uri_bytes" in err["message"] and "8192" in err["message"], err
    assert took < 2, took


async def test_never_mode_clash_both_tools_callable_by_their_listed_names(tmp_path: Path) -> None:
    def tools(*names: str) -> list[dict[str, object]]:
        return [{"name": n, "inputSchema": {"type": "object"}} for n in names]

    with HostileHttpServer(tools=tools("search", "b_search")) as a, HostileHttpServer(tools=tools("search")) as b:
        config = {"prefix": "never", "targets": [{"name": "a", "http": {"url": a.url}},
                                                 {"name": "b", "http": {"url": b.url}}]}
        with run_gateway(config, tmp_path) as gw:
            async with RawClient(gw.mcp_url, 30) as c:
                await c.initialize()
                listed = await c.tool_names()
                answers = {n: (await c.call(n))["result"]["content"][0]["text"] for n in listed}
            conflicts = httpx.get(f"{gw.admin_url}/api/targets", timeout=5).json()
    assert len(listed) == len(set(listed)) == 3, listed
    assert sorted(answers.values()) == sorted(
        [f"search at {a.port}", f"b_search at {a.port}", f"search at {b.port}"]), answers
    assert any("'search'" in line and "'b'" in line for line in conflicts["conflicts"]), conflicts
