"""Tasks (MCP 2025-11-25) through the gateway, from server-everything, which has them.

mcpmux runs no tasks: it carries them from the target that does, and replaces every
task id with a sealed one that names the target and the caller's session, so calls on
it go back to the right target and another session cannot use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.conftest import HttpPeer
from tests.support.conformance import conformance_backend
from tests.support.gateway import Gateway, run_gateway
from tests.support.mcp_http import RawClient, sse_messages

RESEARCH = "everything_simulate-research-query"


@pytest.fixture(scope="module")
def gateway(everything_http: HttpPeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("tasks")
    with (tmp / "backend.log").open("w") as log, conformance_backend(stderr=log) as plain:
        config = {"targets": [{"name": "everything", "http": {"url": everything_http.url}},
                              {"name": "plain", "http": {"url": plain}}]}
        with run_gateway(config, tmp) as gw:
            yield gw


def _task_ids(value: Any) -> list[str]:
    """Every taskId anywhere in a message."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k == "taskId" and isinstance(v, str)]
        return found + [i for v in value.values() for i in _task_ids(v)]
    if isinstance(value, list):
        return [i for v in value for i in _task_ids(v)]
    return []


async def test_capability_is_the_targets(gateway: Gateway) -> None:
    async with RawClient(gateway.mcp_url) as c:
        init = await c.initialize()
    tasks = init["capabilities"]["tasks"]
    assert "list" in tasks and "cancel" in tasks and "call" in tasks["requests"]["tools"]


async def test_a_task_runs_on_its_target_under_a_sealed_id(gateway: Gateway) -> None:
    async with RawClient(gateway.mcp_url) as c, RawClient(gateway.mcp_url) as other:
        await c.initialize()
        await other.initialize()
        created = await c.rpc("tools/call", {"name": RESEARCH, "arguments": {"topic": "tides"},
                                             "task": {"ttl": 60000}})
        task = created["result"]["task"]
        tid = task["taskId"]
        assert tid.startswith("mcpmux-task.") and task["status"] == "working"

        got = await c.rpc("tasks/get", {"taskId": tid})
        assert got["result"]["taskId"] == tid and got["result"]["status"] in ("working", "completed")
        listed = await c.rpc("tasks/list", {})
        assert tid in [t["taskId"] for t in listed["result"]["tasks"]]

        # tasks/result waits for the end: the tool's own result, tied to our id.
        done = await c.rpc("tasks/result", {"taskId": tid})
        assert "tides" in done["result"]["content"][0]["text"]
        related = done["result"].get("_meta", {}).get("io.modelcontextprotocol/related-task")
        assert related is None or related["taskId"] == tid
        assert (await c.rpc("tasks/get", {"taskId": tid}))["result"]["status"] == "completed"

        # Another session: the id means nothing there, and its list is its own.
        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            refused = await other.rpc(method, {"taskId": tid})
            assert refused["error"]["code"] == -32602, refused
        assert tid not in _task_ids((await other.rpc("tasks/list", {}))["result"])
        # A forged id (the target's own, or an altered seal) is refused too.
        assert (await c.rpc("tasks/get", {"taskId": tid[:-2] + "xx"}))["error"]["code"] == -32602

        # Whatever the target said about its tasks reached us with sealed ids only.
        assert all(i.startswith("mcpmux-task.") for i in _task_ids(c.notifications))


async def test_cancel_reaches_the_target(gateway: Gateway) -> None:
    async with RawClient(gateway.mcp_url) as c:
        await c.initialize()
        created = await c.rpc("tools/call", {"name": RESEARCH, "arguments": {"topic": "x"},
                                             "task": {"ttl": 60000}})
        tid = created["result"]["task"]["taskId"]
        cancelled = await c.rpc("tasks/cancel", {"taskId": tid})
        assert cancelled["result"]["taskId"] == tid and cancelled["result"]["status"] == "cancelled"
        assert (await c.rpc("tasks/get", {"taskId": tid}))["result"]["status"] == "cancelled"


async def test_a_target_without_tasks_answers_the_call_normally(gateway: Gateway) -> None:
    """The spec's rule for a receiver without tasks: process the request, ignore ``task``."""
    async with RawClient(gateway.mcp_url) as c:
        await c.initialize()
        resp = await c.rpc("tools/call", {"name": "plain_test_simple_text", "arguments": {},
                                          "task": {"ttl": 60000}})
    assert "task" not in resp["result"] and resp["result"]["content"][0]["type"] == "text"


async def test_status_notifications_on_the_get_stream_carry_sealed_ids(gateway: Gateway) -> None:
    """server-everything sends ``notifications/tasks/status`` unattributed, so they reach
    the client's GET stream: with the gateway's sealed id, never the target's own."""
    async with RawClient(gateway.mcp_url) as c:
        await c.initialize()
        seen: list[dict[str, Any]] = []
        got_status = asyncio.Event()

        async def follow() -> None:
            headers = c.headers(Accept="text/event-stream")
            async with c.http.stream("GET", c.url, headers=headers, timeout=None) as resp:
                assert resp.status_code == 200
                buf = ""
                async for chunk in resp.aiter_text():
                    buf += chunk
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        seen.extend(sse_messages(block + "\n\n"))
                        if any(m.get("method") == "notifications/tasks/status" for m in seen):
                            got_status.set()

        reader = asyncio.create_task(follow())
        try:
            created = await c.rpc("tools/call", {"name": RESEARCH, "arguments": {"topic": "waves"},
                                                 "task": {"ttl": 60000}})
            tid = created["result"]["task"]["taskId"]
            await c.rpc("tasks/result", {"taskId": tid})
            await asyncio.wait_for(got_status.wait(), 20)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        statuses = [m for m in seen if m.get("method") == "notifications/tasks/status"]
        assert statuses and {m["params"]["taskId"] for m in statuses} == {tid}, statuses
