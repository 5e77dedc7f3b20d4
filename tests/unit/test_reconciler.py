"""The reconciler (Gateway.apply) across sources, on real stdio demo targets."""

from __future__ import annotations

import asyncio
import sys

from mcpmux.config import GatewayConfig, TargetConfig
from mcpmux.gateway import Gateway


def demo(name: str, module: str) -> TargetConfig:
    return TargetConfig.model_validate(
        {"name": name, "stdio": {"command": sys.executable, "args": ["-m", f"mcpmux.demo.{module}"]}}
    )


async def test_a_name_held_by_another_source_is_taken_up_when_it_is_freed() -> None:
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
