"""The list a client sees is the list the server would show it (issue 16).

``@modelcontextprotocol/server-everything`` registers some tools only for clients that
declared sampling, elicitation or roots. For each capability set, the official Python
SDK client lists the tools of the server directly (stdio, or streamable HTTP) and
through the gateway (``mcpmux run`` with a stdio or an HTTP target, and ``mcpmux
bridge``) with the same callbacks: the names must be the same, prefix aside. A client
without sampling cannot call the sampling tool either: the server itself says it has
no such tool, as it would to that client directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.e2e.conftest import HttpPeer
from tests.e2e.test_isolation import everything_processes
from tests.e2e.test_transports import Bridge, run_bridge
from tests.support.conformance import server_everything_cmd
from tests.support.gateway import Gateway, run_gateway

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

CMD = server_everything_cmd("stdio")
SETS = [(), ("sampling",), ("elicitation",), ("roots",), ("sampling", "elicitation"), ("sampling", "elicitation", "roots")]


async def _sample(ctx: Any, params: Any) -> Any:
    raise AssertionError("not asked in these tests")


async def _elicit(ctx: Any, params: Any) -> Any:
    raise AssertionError("not asked in these tests")


async def _roots(ctx: Any) -> Any:
    raise AssertionError("not asked in these tests")


def callbacks(caps: tuple[str, ...]) -> dict[str, Any]:
    named = {"sampling": ("sampling_callback", _sample), "elicitation": ("elicitation_callback", _elicit),
             "roots": ("list_roots_callback", _roots)}
    return dict(named[c] for c in caps)


async def names(s: ClientSession, prefix: str = "") -> list[str]:
    tools = (await s.list_tools()).tools
    assert all(t.name.startswith(prefix) for t in tools)
    return sorted(t.name.removeprefix(prefix) for t in tools)


async def direct_stdio(caps: tuple[str, ...]) -> list[str]:
    params = StdioServerParameters(command=CMD[0], args=CMD[1:])
    async with stdio_client(params) as (r, w), ClientSession(r, w, **callbacks(caps)) as s:
        await s.initialize()
        return await names(s)


@contextlib.asynccontextmanager
async def via_http(url: str, caps: tuple[str, ...]) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (r, w), ClientSession(r, w, **callbacks(caps)) as s:
        await s.initialize()
        yield s


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {"prefix": "always", "targets": [{"name": "everything", "stdio": {"command": CMD[0], "args": CMD[1:]}}]}
    with run_gateway(config, tmp_path_factory.mktemp("caplists")) as g:
        yield g


@pytest.fixture(scope="module")
def expected() -> dict[tuple[str, ...], list[str]]:
    import asyncio

    return {caps: asyncio.run(direct_stdio(caps)) for caps in SETS}


def test_the_sets_differ(expected: dict[tuple[str, ...], list[str]]) -> None:
    """The comparison means something: server-everything's lists do depend on the set."""
    assert len({tuple(v) for v in expected.values()}) >= 4
    assert "trigger-sampling-request" not in expected[()]


@pytest.mark.parametrize("caps", SETS, ids=lambda c: "+".join(c) or "none")
async def test_stdio_target_lists_what_the_server_shows_that_client(
        gw: Gateway, expected: dict[tuple[str, ...], list[str]], caps: tuple[str, ...]) -> None:
    async with via_http(gw.mcp_url, caps) as s:
        assert await names(s, "everything_") == expected[caps]


async def test_a_client_without_sampling_cannot_call_the_sampling_tool(gw: Gateway) -> None:
    async with via_http(gw.mcp_url, ()) as s:
        try:
            res = await s.call_tool("everything_trigger-sampling-request", {"prompt": "hi"})
            assert res.is_error, res  # the server's own "no such tool" (a result, in its SDK)
            said = str(res.content)
        except MCPError as exc:
            said = exc.error.message
        assert "not found" in said.lower() and "trigger-sampling-request" in said, said
        assert not (await s.call_tool("everything_echo", {"message": "ok"})).is_error


async def test_processes_stay_bounded_by_the_sets(gw: Gateway) -> None:
    """Many clients of one set: one shared process for it, whatever their number."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(4):
            s = await stack.enter_async_context(via_http(gw.mcp_url, ()))
            await names(s)
            await s.call_tool("everything_echo", {"message": "x"})
        before = sorted(everything_processes(gw))
        for _ in range(3):
            s = await stack.enter_async_context(via_http(gw.mcp_url, ()))
            await s.call_tool("everything_echo", {"message": "x"})
        assert sorted(everything_processes(gw)) == before
    assert len(before) <= 1 + len(SETS)


async def test_http_target_lists_what_the_server_shows_that_client(
        everything_http: HttpPeer, tmp_path: Path) -> None:
    config = {"prefix": "always", "targets": [{"name": "everything", "http": {"url": everything_http.url}}]}
    with run_gateway(config, tmp_path) as g:
        for caps in [(), ("sampling",), ("sampling", "elicitation", "roots")]:
            async with via_http(everything_http.url, caps) as direct:
                want = await names(direct)
            async with via_http(g.mcp_url, caps) as s:
                assert await names(s, "everything_") == want, caps


async def test_bridge_lists_what_the_server_shows_that_client(
        expected: dict[tuple[str, ...], list[str]], tmp_path: Path) -> None:
    with run_bridge(tmp_path, CMD) as bridge:
        b: Bridge = bridge
        for caps in [(), ("roots",), ("sampling", "elicitation", "roots")]:
            async with via_http(b.gw.mcp_url, caps) as s:
                assert await names(s) == expected[caps], caps
