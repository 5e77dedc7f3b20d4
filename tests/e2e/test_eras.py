"""Both protocol eras, and translation between them (issue 7), with the official SDK.

One gateway fronts a 2026-07-28-only server (``modern``) and a handshake-only server
(``legacy``), both built on the official Python SDK (``tests/peers/era_servers.py``).
The SDK client, in ``mode="2026-07-28"`` and in ``mode="legacy"``, uses every feature
against both, so all four client x target combinations run:

* modern -> modern: passed through (the target's ``requestState`` sealed by the gateway);
* modern -> handshake: the target's ``elicitation/create`` / ``sampling/createMessage``
  become an ``InputRequiredResult``; the retry's ``inputResponses`` answer them;
* handshake -> modern: the target's ``InputRequiredResult`` becomes real server->client
  requests on the call's stream; their answers go back as the retry;
* handshake -> handshake: relayed on the call's stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    Implementation,
    TextContent,
    TextResourceContents,
)
from tests.e2e.conftest import start_everything_http, stop_peer
from tests.support.eras import era_server
from tests.support.gateway import Gateway, run_gateway

MODES = ["2026-07-28", "legacy"]
TARGETS = ["modern", "legacy"]
#: What each target's own server says (its echo prefix).
SERVER_WORD = {"modern": "modern", "legacy": "legacy"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("eras")
    with (
        era_server("modern", tmp / "modern.log") as modern,
        era_server("handshake", tmp / "legacy.log") as legacy,
    ):
        config = {
            "targets": [
                {"name": "modern", "http": {"url": modern}},
                {"name": "legacy", "http": {"url": legacy}},
            ]
        }
        with run_gateway(config, tmp) as gw:
            yield gw


@dataclass
class User:
    """The human and the model behind the client: answers and remembers what was asked."""

    name: str = "Ada"
    action: str = "accept"
    elicited: list[ElicitRequestParams] = field(default_factory=list)
    sampled: list[CreateMessageRequestParams] = field(default_factory=list)

    async def elicit(
        self, context: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        self.elicited.append(params)
        if self.action != "accept":
            return ElicitResult(action=self.action)  # type: ignore[arg-type]
        return ElicitResult(action="accept", content={"name": self.name})

    async def sample(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        self.sampled.append(params)
        question = params.messages[0].content
        asked = question.text if isinstance(question, TextContent) else "?"
        return CreateMessageResult(
            role="assistant",
            model="fake-llm",
            content=TextContent(type="text", text=f"Paris (to {asked!r})"),
        )


def _client(gw: Gateway, mode: str, user: User | None = None) -> Client:
    user = user or User()
    return Client(
        gw.mcp_url, mode=mode, elicitation_callback=user.elicit, sampling_callback=user.sample
    )


def _text(result: Any) -> str:
    assert not getattr(result, "is_error", False), result
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def test_targets_show_their_era(gateway: Gateway) -> None:
    targets = gateway.targets()
    assert targets["modern"]["era"] == "modern"
    # (a dual-era target lists ["2026-07-28", "handshake"]; a single-era one its era alone)
    assert len(targets["modern"]["eras"]) == 1 and "handshake" not in targets["modern"]["eras"]
    assert targets["modern"]["protocolVersion"] == "2026-07-28"
    assert targets["legacy"]["era"] == "handshake"
    assert targets["legacy"]["eras"] == ["handshake"]
    assert targets["legacy"]["protocolVersion"] == "2025-11-25"


def test_server_everything_speaks_the_handshake_era(tmp_path: Path) -> None:
    """The reference server (TypeScript SDK) is handshake-era: ``server/discover`` fails."""
    peer = start_everything_http(tmp_path / "everything.log")
    try:
        with run_gateway(
            {"targets": [{"name": "everything", "http": {"url": peer.url}}]}, tmp_path
        ) as gw:
            status = gw.targets()["everything"]
            assert (status["era"], status["eras"]) == ("handshake", ["handshake"])
    finally:
        stop_peer(peer)


@pytest.mark.parametrize("mode", MODES)
async def test_lists_merge_both_eras(gateway: Gateway, mode: str) -> None:
    async with _client(gateway, mode) as c:
        await _lists(c)


async def _lists(c: Client) -> None:
    tools = {t.name for t in (await c.list_tools()).tools}
    expected = {
        "ask_name",
        "ask_model",
        "ask_both",
        "echo",
        "log_levels",
        "add_tool",
        "stats",
        "whoami",
    }
    assert {f"modern_{n}" for n in expected} | {f"legacy_{n}" for n in expected} <= tools
    assert {p.name for p in (await c.list_prompts()).prompts} == {
        "modern_greeting",
        "legacy_greeting",
    }
    uris = {str(r.uri) for r in (await c.list_resources()).resources}
    assert uris == {"modern+modern://info", "legacy+legacy://info"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_call_prompt_resource(gateway: Gateway, mode: str, target: str) -> None:
    async with _client(gateway, mode) as c:
        await _call_prompt_resource(c, target)


async def _call_prompt_resource(c: Client, target: str) -> None:
    word = SERVER_WORD[target]
    assert (
        _text(await c.call_tool(f"{target}_echo", {"text": "hi there"})) == f"{word} echo: hi there"
    )

    prompt = await c.get_prompt(f"{target}_greeting", {"name": "Grace"})
    server = "modern" if target == "modern" else "handshake"
    assert [m.content.text for m in prompt.messages if isinstance(m.content, TextContent)] == [
        f"Hello Grace, from the {server} server."
    ]

    uri = f"{target}+{'modern' if target == 'modern' else 'legacy'}://info"
    read = await c.read_resource(uri)
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert str(content.uri) == uri
    assert content.text.startswith("served by a ")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_elicitation(gateway: Gateway, mode: str, target: str) -> None:
    user = User()
    async with _client(gateway, mode, user) as c:
        await _elicitation(c, user, target)


async def _elicitation(c: Client, user: User, target: str) -> None:
    assert _text(await c.call_tool(f"{target}_ask_name", {})) == "Hello, Ada!"
    (asked,) = user.elicited
    assert asked.message == "What is your name?"
    schema = asked.requested_schema  # type: ignore[union-attr]
    assert schema["properties"]["name"]["type"] == "string"

    user.name = "Grace Hopper"  # a second call gets a fresh answer, not a cached one
    assert _text(await c.call_tool(f"{target}_ask_name", {})) == "Hello, Grace Hopper!"
    user.action = "decline"
    assert _text(await c.call_tool(f"{target}_ask_name", {})) == "no name (decline)"
    assert len(user.elicited) == 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_sampling(gateway: Gateway, mode: str, target: str) -> None:
    user = User()
    async with _client(gateway, mode, user) as c:
        result = await c.call_tool(f"{target}_ask_model", {"question": "Capital of France?"})
    assert _text(result) == "model said: Paris (to 'Capital of France?')"
    (asked,) = user.sampled
    assert asked.max_tokens == 50


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_two_questions_in_one_call(gateway: Gateway, mode: str, target: str) -> None:
    """Elicitation, then sampling that uses its answer: two rounds (or two requests on
    one stream), each answered where it came from."""
    user = User(name="Ada")
    async with _client(gateway, mode, user) as c:
        result = await c.call_tool(f"{target}_ask_both", {})
    assert _text(result) == "Ada: Paris (to 'Greet Ada')"
    assert [e.message for e in user.elicited] == ["Name?"]
    assert len(user.sampled) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_what_the_target_is_told(gateway: Gateway, mode: str, target: str) -> None:
    """Each target hears the client in its own era: a handshake target gets no 2026
    envelope in ``_meta`` (it has ``initialize``); a modern target gets the client's own
    capabilities and info in the envelope, whatever era the client speaks."""
    info = Implementation(name="era-probe", version="7")
    user = User()
    async with Client(
        gateway.mcp_url, mode=mode, elicitation_callback=user.elicit, client_info=info
    ) as c:
        seen = json.loads(_text(await c.call_tool(f"{target}_whoami", {})))
    declared: dict[str, Any] = {"elicitation": {"form": {}, "url": {}}}
    if target == "legacy":
        assert seen["protocolVersion"] == "2025-11-25"
        assert not [k for k in seen["meta"] if k.startswith("io.modelcontextprotocol/")], seen
        if mode == "legacy":  # its own upstream session, opened with its capabilities
            assert seen["capabilities"] == declared
    else:
        assert seen["protocolVersion"] == "2026-07-28"
        meta = seen["meta"]
        assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
        assert meta["io.modelcontextprotocol/clientCapabilities"] == declared
        assert meta["io.modelcontextprotocol/clientInfo"] == {"name": "era-probe", "version": "7"}
        assert seen["capabilities"] == declared


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_stdio_server_is_reachable_from_both_eras(tmp_path: Path, mode: str) -> None:
    """``mcp-server-time`` (PyPI, on the SDK 2.x stdio loop) refuses 2026 envelopes on a
    handshake connection: a modern client's call must reach it without one."""
    command = str(Path(sys.executable).with_name("mcp-server-time"))
    config = {"targets": [{"name": "time", "stdio": {"command": command, "args": []}}]}
    with run_gateway(config, tmp_path) as gw:
        assert gw.targets()["time"]["era"] == "handshake"
        async with Client(gw.mcp_url, mode=mode) as c:
            result = await c.call_tool("get_current_time", {"timezone": "UTC"})
    assert json.loads(_text(result))["timezone"] == "UTC"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_concurrent_elicitations_do_not_cross(
    gateway: Gateway, mode: str, target: str
) -> None:
    """Two clients asked at the same time each get their own question and answer."""
    results: dict[str, str] = {}

    async def one(name: str) -> None:
        async with _client(gateway, mode, User(name=name)) as c:
            results[name] = _text(await c.call_tool(f"{target}_ask_name", {}))

    await asyncio.gather(*(one(n) for n in ("Ada", "Grace", "Barbara")))
    assert results == {n: f"Hello, {n}!" for n in ("Ada", "Grace", "Barbara")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
async def test_client_without_elicitation_is_refused(
    gateway: Gateway, mode: str, target: str
) -> None:
    """A client that cannot answer elicitation is never asked; the call fails cleanly and
    the next (capable) client is unaffected."""
    outcome: Any
    async with Client(gateway.mcp_url, mode=mode) as c:
        try:
            outcome = await c.call_tool(f"{target}_ask_name", {})
        except MCPError as exc:
            outcome = exc.error
    if (mode, target) == ("legacy", "legacy"):
        # Nothing to translate: the gateway refuses the target's elicitation/create as the
        # client would have (-32601) and the target reports the failure as it chooses.
        assert isinstance(outcome, ErrorData) or outcome.is_error, outcome
        assert "Hello" not in str(outcome)
    else:
        # A modern party is involved: MissingRequiredClientCapabilityError, naming what is
        # missing as a ClientCapabilities object (from the modern target itself, or from
        # the gateway when a handshake target asked a modern client).
        assert isinstance(outcome, ErrorData), outcome
        assert outcome.code == -32021, outcome
        assert outcome.data == {"requiredCapabilities": {"elicitation": {}}}
    async with _client(gateway, mode) as c:
        assert _text(await c.call_tool(f"{target}_ask_name", {})) == "Hello, Ada!"


async def test_stats_count_every_run(gateway: Gateway) -> None:
    """Sanity for the counter the listener tests rely on."""
    async with _client(gateway, "legacy") as c:
        before = json.loads(_text(await c.call_tool("modern_stats", {})))["ask_name"]
        await c.call_tool("modern_ask_name", {})
        after = json.loads(_text(await c.call_tool("modern_stats", {})))["ask_name"]
    # one run asks, the retry answers: two runs of the tool for one call
    assert after - before == 2
