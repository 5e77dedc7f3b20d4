"""The reconciler (Gateway.apply) across sources, on real stdio demo targets."""

from __future__ import annotations

import asyncio
import os
import sys

from mcpmux.config import GatewayConfig, TargetConfig
from mcpmux.dispatch import Dispatcher
from mcpmux.gateway import Gateway


def demo(name: str, module: str) -> TargetConfig:
    return TargetConfig.model_validate(
        {"name": name, "stdio": {"command": sys.executable, "args": ["-m", f"mcpmux.demo.{module}"]}}
    )


async def test_a_name_held_by_another_source_is_taken_up_when_it_is_freed() -> None:
    from tests.support.gateway import children_of

    before = set(children_of(os.getpid()))
    gw = Gateway(GatewayConfig())
    try:
        await gw.apply([demo("x", "clock")], source="config")
        await gw.apply([demo("x", "notes"), demo("y", "notes")], source="kubernetes")
        assert gw.targets["x"].source == "config"  # the clash is ignored, not a takeover
        assert gw.targets["y"].source == "kubernetes"
        await gw.apply([], source="config")  # the file drops x: discovery's x takes the name
        assert gw.targets["x"].source == "kubernetes"
        assert gw.targets["x"].config == demo("x", "notes")
        await asyncio.wait_for(gw.wait_ready(), 15)
        assert gw.targets["x"].ready
    finally:
        await gw.aclose()
    # The replaced target was removed while (possibly) still starting: no orphan child.
    assert set(children_of(os.getpid())) - before == set()


async def test_closing_the_gateway_leaves_no_task_and_no_process() -> None:
    """Structured concurrency: every task the gateway, its targets and their upstream
    sessions started is gone after aclose(), and so are the children."""
    from tests.support.gateway import children_of

    before = {t for t in asyncio.all_tasks()}
    others = set(children_of(os.getpid()))  # peers other suites started in this process
    gw = Gateway(GatewayConfig())
    dispatcher = Dispatcher(gw)  # the session reaper and the MRTR bridge are tasks too
    await dispatcher.start()
    await gw.apply([demo("a", "clock"), demo("b", "notes")], source="config")
    await asyncio.wait_for(gw.wait_ready(), 15)
    assert all(t.ready for t in gw.targets.values())
    pids = set(children_of(os.getpid())) - others
    assert len(pids) >= 2
    owned = {t for t in asyncio.all_tasks()} - before
    assert owned, "the gateway should be running tasks (supervisors, readers)"
    await dispatcher.aclose()
    await asyncio.sleep(0)
    left = [t for t in owned if not t.done()]
    assert not left, [t.get_name() for t in left]
    alive = [p for p in pids if p in children_of(os.getpid())]
    assert not alive, f"children left running: {alive}"
