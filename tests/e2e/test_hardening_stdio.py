"""A hostile stdio server (``tests/peers/hostile.py stdio``) beside a healthy one.

Stray and duplicate answers, garbage lines, a flood of log lines, and a line over the
line limit: each call ends with a clean answer or a clean error naming the target, the
gateway stays small and answers the healthy target meanwhile, and the hostile target
comes back after it is dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.gateway import Gateway, peak_rss_kb, run_gateway
from tests.support.mcp_http import RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
HOSTILE = {"name": "host", "timeout": 10,
           "stdio": {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "peers" / "hostile.py"),
                                                        "stdio"]}}
#: Peak memory bound: the gateway idles at ~60 MB; the flood alone is 1.3 GB of lines.
RSS_BOUND_KB = 300 * 1024




@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway({"targets": [CLOCK, HOSTILE]}, tmp_path_factory.mktemp("hostile-stdio")) as g:
        yield g


async def clock_still_answers(c: RawClient) -> None:
    res = await c.call("clock_add", {"a": 2, "b": 3})
    assert res["result"]["structuredContent"] == {"sum": 5}, res


@pytest.mark.parametrize("tool", ["stray", "garbage", "log_flood"])
async def test_a_hostile_stdio_server_gets_its_own_answer_and_nothing_else_breaks(gw: Gateway, tool: str) -> None:
    async with RawClient(gw.mcp_url) as c:
        await c.initialize()
        res = await c.call(f"host_{tool}")
        assert res["result"]["content"][0]["text"] == f"{tool} done", res
        await clock_still_answers(c)
        res = await c.call("host_echo")  # the process is still in step: no answer was mixed up
        assert res["result"]["content"][0]["text"] == "echo done", res
    assert peak_rss_kb(gw.proc.pid) < RSS_BOUND_KB


async def test_a_line_over_the_limit_drops_the_process_cleanly_and_it_comes_back(gw: Gateway) -> None:
    async with RawClient(gw.mcp_url) as c:
        await c.initialize()
        res = await c.call("host_huge_line")
        err = res["error"]
        assert err["code"] == -32001 and err["data"] == {"target": "host"}, res
        assert "line limit" in err["message"], err
        await clock_still_answers(c)
        # The process that sent the line (this client's capability set's) was dropped;
        # the next call starts it again.
        assert "line limit" in gw.log()
        gw.wait_target("host", "ready", timeout=30)
        res = await c.call("host_echo")
        assert res["result"]["content"][0]["text"] == "echo done", res
    assert peak_rss_kb(gw.proc.pid) < RSS_BOUND_KB
