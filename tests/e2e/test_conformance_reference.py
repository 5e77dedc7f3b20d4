"""The conformance suites against the official reference server, directly and through
mcpmux, compared check by check.

The reference server is the conformance repository's own ``everything-server``
(vendored in ``tests/peers/reference-server``, see its README): a backend nobody here
wrote, speaking both eras, with SSE polling (it closes response streams early and
expects ``Last-Event-ID`` resumption) and the 2026 ``subscriptions/listen`` stream.

Every check that passes directly must pass through the gateway, both with the reference
server as the only target and multiplexed beside server-everything (``prefix: never``,
so the suite sees the names it expects). The reference server answers tools it does not
list (the ``test_trigger_*_change`` hooks that mutate its lists; ``slow_compute`` and
``greet``, which it lacks, with an isError result): in the merged namespace such a name
has an owner only through ``fallback_target``, which the multiplexed layout sets, as a
user in front of such a server would.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.conformance import (
    SUITES,
    assert_nothing_lost,
    baseline,
    reference_server,
    run_conformance_full,
    server_everything_cmd,
)
from tests.support.gateway import run_gateway


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("reference") / "server.log"
    with reference_server(log) as url:
        yield url


@pytest.fixture(scope="module")
def direct() -> dict:
    """Direct baselines, one per suite, shared by both layouts."""
    return {}


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_single_target(reference: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path) -> None:
    base = baseline(direct, reference, alpha, req)
    with run_gateway({"targets": [{"name": "reference", "http": {"url": reference}}]}, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        assert_nothing_lost(base, via, gw.log(), floor=36)


@pytest.mark.parametrize(("alpha", "req"), SUITES)
def test_multiplexed_beside_server_everything(
    reference: str, direct: dict, alpha: bool, req: str | None, tmp_path: Path
) -> None:
    base = baseline(direct, reference, alpha, req)
    cmd = server_everything_cmd("stdio")
    config = {
        "prefix": "never",
        "fallback_target": "reference",
        "targets": [
            {"name": "reference", "http": {"url": reference}},
            {"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}},
        ],
    }
    with run_gateway(config, tmp_path) as gw:
        via = run_conformance_full(gw.mcp_url, alpha=alpha, requirements=req)
        assert_nothing_lost(base, via, gw.log(), floor=36)



def _events(lines: Iterable[str]) -> Iterator[tuple[str | None, str]]:
    """(id, data) of each SSE event; ``retry``-only events too (data "")."""
    event_id, data = None, ""
    for line in lines:
        if not line:
            yield event_id, data
            event_id, data = None, ""
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def _polled_call(url: str) -> tuple[list[dict], dict | None]:
    """``test_reconnection`` as a polling client makes it: the messages on the POST
    stream, then the answer read on a GET with Last-Event-ID. The GET waits at most 4 s,
    less than the 5 s ``retry`` the reference server sets: a hop that resumes its target
    only when that delay is over, not when its client comes back, makes it wait longer."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    accept = {"accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=10) as http:
        first = http.post(url, json=init, headers=accept)
        sid = first.headers["mcp-session-id"]
        headers = {**accept, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
        http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "test_reconnection", "arguments": {}}}
        on_post: list[dict] = []
        last_id = None
        with http.stream("POST", url, json=call, headers=headers) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for event_id, data in _events(resp.iter_lines()):
                last_id = event_id or last_id
                if data:
                    on_post.append(json.loads(data))
        assert last_id is not None, "no event id to resume from"
        get = {**headers, "accept": "text/event-stream", "last-event-id": last_id}
        with http.stream("GET", url, headers=get, timeout=httpx.Timeout(10, read=4)) as resp:
            assert resp.status_code == 200
            for _, data in _events(resp.iter_lines()):
                msg = json.loads(data) if data else {}
                if msg.get("id") == 1:
                    return on_post, msg
    return on_post, None


def test_a_closed_stream_is_resumed_as_directly(reference: str, tmp_path: Path) -> None:
    """The target closes its answer stream mid-call (SEP-1699): the client's stream closes
    too, without the answer, and its GET with Last-Event-ID gets the answer, as directly."""
    direct_post, direct_answer = _polled_call(reference)
    with run_gateway({"targets": [{"name": "reference", "http": {"url": reference}}]}, tmp_path) as gw:
        via_post, via_answer = _polled_call(gw.mcp_url)
    assert direct_post == [] and via_post == []
    assert direct_answer is not None and via_answer is not None
    assert via_answer["result"] == direct_answer["result"]
