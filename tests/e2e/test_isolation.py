"""Isolation on a shared stdio target, proved with real peers on ``/mcp`` and ``/sse``.

The target is ``@modelcontextprotocol/server-everything`` over stdio; the clients are the
official Python SDK. stdio carries nothing that links a server's request or log line to
the call that caused it, so the gateway gives a client that can be asked something
(sampling, elicitation, roots) or that set a log level a process of its own, at most
``limits.max_client_processes`` per target. These tests check what each client received:

* a client's sampling or elicitation request never reaches another client, even one
  with a call in flight; a client that cannot answer gets a clean error; a client that
  can is asked itself, while another client also has a call in flight;
* a log line caused by one client's call never reaches another client;
* five capable clients leave at most 1 + ``max_client_processes`` server processes, plus
  one shared by the overflow clients' capability set; the overflow clients are still
  answered; closing the sessions stops the clients' own processes.

No fixed sleeps: every wait is an awaited event or a bounded poll, and every "X must
not arrive" is checked after a barrier that the same stream delivers after X.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.support.clients import Inbox
from tests.support.conformance import server_everything_cmd
from tests.support.gateway import Gateway, children_of, run_gateway

pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

WAIT = 20.0
KINDS = ["mcp", "sse"]
#: server-everything's entry point: how its processes are told from the reaper shims.
ENTRY = server_everything_cmd("stdio")[1]


def everything(limits: dict[str, Any] | None = None) -> dict[str, Any]:
    cmd = server_everything_cmd("stdio")
    return {
        "prefix": "always",
        "targets": [{"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}}],
        "limits": limits or {},
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(everything(), tmp_path_factory.mktemp("isolation")) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def connect(kind: str, gw: Gateway, **kwargs: Any) -> AsyncIterator[ClientSession]:
    """An initialized SDK session on ``/mcp`` (streamable HTTP) or ``/sse`` (legacy)."""
    transport = (sse_client(gw.mcp_url.removesuffix("/mcp") + "/sse") if kind == "sse"
                 else streamable_http_client(gw.mcp_url))
    async with transport as streams, ClientSession(streams[0], streams[1], **kwargs) as s:
        await s.initialize()
        yield s


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Asked:
    """One client's answers to server requests, signed with its name, and what it was asked."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.requests: list[Any] = []

    async def sample(self, context: ClientRequestContext,
                     params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.requests.append(params)
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text=f"answer-from-{self.who}"))

    async def elicit(self, context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.requests.append(params)
        return types.ElicitResult(action="accept", content={"name": self.who, "check": True})


@contextlib.asynccontextmanager
async def call_in_flight(client: ClientSession) -> AsyncIterator[None]:
    """``client`` has a long call in flight (its progress has arrived) for the block's time."""
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def long_call() -> None:
            with scope:
                await client.call_tool("everything_trigger-long-running-operation",
                                       {"duration": 60, "steps": 120}, progress_callback=on_progress)

        tg.start_soon(long_call)
        with anyio.fail_after(WAIT):
            await started.wait()
        try:
            yield
        finally:
            scope.cancel()


async def refused(call: Awaitable[types.CallToolResult]) -> str:
    """The call ends in a clean error (a tool error or a JSON-RPC error): its text."""
    with anyio.fail_after(WAIT):
        try:
            res = await call
        except MCPError as exc:
            return exc.error.message
    assert res.is_error, res
    return text_of(res)


# ------------------------------------------------- sampling and elicitation


@pytest.mark.parametrize("kind", KINDS)
async def test_a_server_request_never_reaches_a_client_whose_call_did_not_cause_it(gw: Gateway, kind: str) -> None:
    """A can answer sampling and elicitation and has a call in flight; B can answer
    neither and calls the tools that ask. A is never asked, never sees B's prompt; B
    gets a clean error and its session goes on."""
    a_asked, a_box = Asked("a"), Inbox()
    async with (
        connect(kind, gw, sampling_callback=a_asked.sample, elicitation_callback=a_asked.elicit,
                message_handler=a_box) as a,
        connect(kind, gw) as b,
    ):
        async with call_in_flight(a):
            for tool, args in (("trigger-sampling-request", {"prompt": "b-secret-prompt"}),
                               ("trigger-elicitation-request", {})):
                await refused(b.call_tool(f"everything_{tool}", args))
            assert text_of(await b.call_tool("everything_echo", {"message": "still here"})) == "Echo: still here"
        assert a_asked.requests == []
        assert "b-secret-prompt" not in repr(a_box.items)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_client_that_can_answer_is_asked_itself_while_another_has_a_call_in_flight(
    gw: Gateway, kind: str
) -> None:
    """Both declare sampling and elicitation; A has a call in flight. B's requests are
    B's to answer (not refused as ambiguous, not given to A)."""
    a_asked, b_asked = Asked("a"), Asked("b")
    async with (
        connect(kind, gw, sampling_callback=a_asked.sample, elicitation_callback=a_asked.elicit) as a,
        connect(kind, gw, sampling_callback=b_asked.sample, elicitation_callback=b_asked.elicit) as b,
        call_in_flight(a),
    ):
        with anyio.fail_after(WAIT):
            res = await b.call_tool("everything_trigger-sampling-request", {"prompt": "for-b-only"})
        assert not res.is_error, res
        assert "answer-from-b" in text_of(res)
        with anyio.fail_after(WAIT):
            res = await b.call_tool("everything_trigger-elicitation-request", {})
        assert not res.is_error, res
        assert "Name: b" in text_of(res)
    assert a_asked.requests == []
    assert len(b_asked.requests) == 2 and "for-b-only" in str(b_asked.requests[0].messages[0].content)


# ---------------------------------------------------------------------- logging


def is_log(fragment: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, types.LoggingMessageNotification) and fragment in str(m.params.data)


def roots(count: int) -> Callable[[Any], Awaitable[types.ListRootsResult]]:
    async def answer(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///root-{i}") for i in range(count)])

    return answer


@pytest.mark.parametrize("kind", KINDS)
async def test_log_lines_of_one_client_s_call_never_reach_another(gw: Gateway, kind: str) -> None:
    """A and B both set a log level. A's call switches on server-everything's simulated
    logging (a line at once, then one every 5 s). B's barrier is a line of its own: its
    process logs "Roots updated: 2 root(s)" once B has answered ``roots/list``. It is
    posted after A's line arrived, so a leaked line would reach B before it."""
    a_box, b_box = Inbox(), Inbox()
    async with (
        connect(kind, gw, message_handler=a_box, list_roots_callback=roots(1)) as a,
        connect(kind, gw, message_handler=b_box, list_roots_callback=roots(2)) as b,
    ):
        await a.set_logging_level("debug")
        await b.set_logging_level("debug")
        await a.call_tool("everything_toggle-simulated-logging", {})
        await a_box.wait_for(is_log("-level message"))
        assert text_of(await b.call_tool("everything_echo", {"message": "hi"})) == "Echo: hi"
        # B's barrier, or a line of A's if one leaks to B (whichever arrives first).
        await b_box.wait_for(lambda m: is_log("Roots updated: 2 root(s)")(m) or is_log("-level message")(m))
        b_lines = [str(p.data) for p in b_box.logs()]
        assert b_lines == ["Roots updated: 2 root(s) received from client"], b_lines
        a_lines = [str(p.data) for p in a_box.logs()]
        assert not any("2 root(s)" in line for line in a_lines), a_lines


# --------------------------------------------------------- bounded process count


def everything_processes(gw: Gateway) -> list[int]:
    """The gateway's descendants that are server-everything itself (not its reaper shim)."""
    out = []
    for pid in children_of(gw.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and Path(argv[0].decode()).name == "node" and argv[1].decode() == ENTRY:
            out.append(pid)
    return out


def poll(check: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.1)


async def test_client_processes_stay_bounded_by_the_config(tmp_path: Path) -> None:
    with run_gateway(everything({"max_client_processes": 2}), tmp_path) as gw:
        assert len(everything_processes(gw)) == 1  # the target's own (shared) process
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for i, kind in enumerate(["mcp", "sse", "mcp", "sse", "mcp"]):
                asked = Asked(f"c{i}")
                clients.append(await stack.enter_async_context(
                    connect(kind, gw, sampling_callback=asked.sample, elicitation_callback=asked.elicit)))
            for i, client in enumerate(clients):  # every one answered, the overflow ones too
                res = await client.call_tool("everything_echo", {"message": f"from {i}"})
                assert text_of(res) == f"Echo: from {i}"
            # The target's own, two of clients' own, and the shared one of the overflow
            # clients' capability set (variants.py: they see what the server shows them).
            assert len(everything_processes(gw)) == 1 + 2 + 1
            # A second round starts nothing new.
            for client in clients:
                await client.call_tool("everything_get-sum", {"a": 1, "b": 2})
            assert len(everything_processes(gw)) == 1 + 2 + 1
            assert "max_client_processes" in gw.log()
        # The sessions ended: their processes stop; the target's own and the shared one
        # of the capability set stay (at most eight sets per target).
        poll(lambda: len(everything_processes(gw)) == 1 + 1, "client processes outlived their sessions")
