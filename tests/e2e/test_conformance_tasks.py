"""The 2026 tasks extension (SEP-2663) through mcpmux, against the suite's tasks checks.

No published server has the extension yet (the reference server at every reachable
commit, the Python and TypeScript SDKs: see ``tests/peers/tasks_server.py``), so the
target is a stand-in written from the suite's scenario texts. The alpha suite with
``--requirements 2026-07-28`` runs directly against it and through the gateway; every
check that passes directly (its ``tasks-*`` ones: negotiation, lifecycle, dispatch,
wire fields, routing headers, required-task errors) must pass through mcpmux, alone
and multiplexed beside server-everything. Then what the suite cannot see: the task id
a client gets is sealed by the gateway, and the target's own id is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.conformance import (
    ConformanceRun,
    assert_nothing_lost,
    run_conformance_full,
    server_everything_cmd,
    tasks_server,
)
from tests.support.gateway import run_gateway

EXT = "io.modelcontextprotocol/tasks"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with tasks_server(tmp_path_factory.mktemp("tasks") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def direct(target: str) -> ConformanceRun:
    return run_conformance_full(target, alpha=True, requirements="2026-07-28")


def test_single_target(target: str, direct: ConformanceRun, tmp_path: Path) -> None:
    with run_gateway({"targets": [{"name": "tasks", "http": {"url": target}}]}, tmp_path) as gw:
        assert_nothing_lost(direct, run_conformance_full(gw.mcp_url, alpha=True, requirements="2026-07-28"),
                            gw.log(), floor=25, only="tasks-")


def test_multiplexed_beside_server_everything(target: str, direct: ConformanceRun, tmp_path: Path) -> None:
    cmd = server_everything_cmd("stdio")
    config = {"prefix": "never", "targets": [
        {"name": "tasks", "http": {"url": target}},
        {"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}},
    ]}
    with run_gateway(config, tmp_path) as gw:
        assert_nothing_lost(direct, run_conformance_full(gw.mcp_url, alpha=True, requirements="2026-07-28"),
                            gw.log(), floor=25, only="tasks-")


def _post(url: str, method: str, params: dict[str, Any], tasks: bool = True, name: str | None = None) -> dict[str, Any]:
    caps: dict[str, Any] = {"extensions": {EXT: {}}} if tasks else {}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": caps,
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
               "mcp-method": method}
    if name is not None:
        headers["mcp-name"] = name
    body = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": method, "params": {**params, "_meta": meta}}
    out: dict[str, Any] = httpx.post(url, json=body, headers=headers, timeout=10).json()
    return out


def test_task_ids_are_sealed_and_the_targets_own_ids_refused(target: str, tmp_path: Path) -> None:
    with run_gateway({"targets": [{"name": "tasks", "http": {"url": target}}]}, tmp_path) as gw:
        discover = _post(gw.mcp_url, "server/discover", {})
        assert EXT in discover["result"]["capabilities"]["extensions"]
        created = _post(gw.mcp_url, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 1}},
                        name="slow_compute")["result"]
        sealed = created["taskId"]
        assert created["resultType"] == "task" and sealed.startswith("mcpmux-task.")
        got = _post(gw.mcp_url, "tasks/get", {"taskId": sealed}, name=sealed)["result"]
        assert got["taskId"] == sealed and got["status"] in ("working", "completed")
        # The target's own id (what it handed the gateway) means nothing to a client.
        raw = _post(target, "tools/call", {"name": "slow_compute", "arguments": {"seconds": 1}},
                    name="slow_compute")["result"]["taskId"]
        refused = _post(gw.mcp_url, "tasks/get", {"taskId": raw}, name=raw)
        assert refused["error"]["code"] == -32602
        # Without the extension declared: -32021, naming what is missing.
        gated = _post(gw.mcp_url, "tasks/get", {"taskId": sealed}, tasks=False, name=sealed)["error"]
        assert gated["code"] == -32021 and gated["data"]["requiredCapabilities"] == {"extensions": {EXT: {}}}
        ack = _post(gw.mcp_url, "tasks/cancel", {"taskId": sealed}, name=sealed)["result"]
        assert ack["resultType"] == "complete" and "taskId" not in ack
