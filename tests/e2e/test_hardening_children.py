"""Children die with the gateway, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tests.support.gateway import run_gateway
from tests.support.mcp_http import RawClient

HOSTILE = Path(__file__).resolve().parents[1] / "peers" / "hostile.py"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def test_sigkill_of_the_gateway_takes_children_and_grandchildren_along(tmp_path: Path) -> None:
    target = {"name": "immortal", "stdio": {"command": sys.executable, "args": [str(HOSTILE), "immortal"]}}
    with run_gateway({"targets": [target]}, tmp_path) as gw:
        async with RawClient(gw.mcp_url, 20) as c:
            await c.initialize()
            resp = await c.call("pids")
        pids = resp["result"]["structuredContent"]
        server, helpers = pids["server"], pids["helpers"]
        # /api/targets shows the server's own pid (not the reaper shim's): this client
        # (no capabilities) is served by the session of its capability set, beside the
        # catalog session's process; both are the gateway's to take along.
        status = gw.targets()["immortal"]
        assert [s["pid"] for s in status["capabilitySets"]] == [server], status
        catalog = status["pid"]
        assert isinstance(catalog, int) and catalog != server
        everyone = [server, catalog, *helpers]
        assert all(alive(p) for p in everyone)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in everyone) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in everyone if alive(p)]
        for p in left:  # never leak, even when the test fails
            os.kill(p, signal.SIGKILL)
        assert left == [], f"still running after the gateway's SIGKILL: {left} of {pids}"


async def test_a_normal_stop_also_takes_helpers_that_left_the_group(tmp_path: Path) -> None:
    target = {"name": "immortal", "stdio": {"command": sys.executable, "args": [str(HOSTILE), "immortal"]}}
    with run_gateway({"targets": [target]}, tmp_path) as gw:
        async with RawClient(gw.mcp_url, 20) as c:
            await c.initialize()
            pids = (await c.call("pids"))["result"]["structuredContent"]
    # run_gateway stopped it with SIGTERM (the server ignores it: SIGKILL after 3 s).
    everyone = [pids["server"], *pids["helpers"]]
    deadline = time.monotonic() + 10
    while any(alive(p) for p in everyone) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in everyone if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert left == [], f"still running after the gateway stopped: {left} of {pids}"
