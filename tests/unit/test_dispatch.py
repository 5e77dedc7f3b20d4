"""The core, in one process: dispatcher, sessions, routing and the policy seams,
against targets that are Python objects (tests/support/fake_upstream.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from tests.support.fake_upstream import Client, FakeServer, FakeSession, ToolHandler, core

from mcpmux.context import RequestContext
from mcpmux.dispatch import Dispatcher
from mcpmux.era import Envelope
from mcpmux.jsonrpc import Message, RPCError
from mcpmux.policy import Action
from mcpmux.protocol import Kind
from mcpmux.state import SessionRecord
from mcpmux.upstream.base import UpstreamError


async def echo(_server: FakeServer, _session: FakeSession, msg: Message) -> Message:
    args = msg["params"].get("arguments") or {}
    return {"result": {"content": [{"type": "text", "text": args.get("text", "")}],
                       "structuredContent": {"echo": args}, "x-future": {"kept": True},
                       "_meta": {"upstream-id": msg["id"]}}}


def servers() -> dict[str, FakeServer]:
    return {"a": FakeServer({"echo": echo}, resources=("file:///a.txt",)),
            "b": FakeServer({"echo": echo, "secret": echo})}


async def test_a_call_is_routed_by_its_prefix_with_ids_rewritten_and_fields_kept() -> None:
    srv = servers()
    async with core(srv) as d:
        client = await Client.connect(d)
        resp = await client.request("tools/call", {"name": "b_echo", "arguments": {"text": "hi"},
                                                   "_meta": {"trace": "t1"}}, rid="mine-7")
        assert resp["id"] == "mine-7"
        res = resp["result"]
        assert res["structuredContent"] == {"echo": {"text": "hi"}}
        assert res["x-future"] == {"kept": True}  # unknown fields pass through untouched
        [call] = srv["b"].requests("tools/call")
        assert call["params"]["name"] == "echo" and call["params"]["_meta"] == {"trace": "t1"}
        assert call["id"] != "mine-7" and isinstance(call["id"], int)  # the target's own id space
        assert srv["a"].requests("tools/call") == []


async def test_an_unknown_tool_is_refused_without_forwarding() -> None:
    srv = servers()
    async with core(srv) as d:
        client = await Client.connect(d)
        resp = await client.request("tools/call", {"name": "c_echo"})
        assert resp["error"]["code"] == -32602 and "unknown tool: c_echo" in resp["error"]["message"]
        assert not srv["a"].requests("tools/call") and not srv["b"].requests("tools/call")


async def test_a_name_no_target_lists_goes_to_the_fallback_target_only() -> None:
    """``prefix: never`` merges two servers; ``b`` answers a hook it does not list. The
    name has no owner unless ``fallback_target`` names one; curation still applies."""
    def srv() -> dict[str, FakeServer]:
        return {"a": FakeServer({"echo": echo}), "b": FakeServer({"hook": echo, "gone": echo},
                                                                   unlisted=("hook", "gone"))}
    plain = srv()
    async with core(plain, prefix="never") as d:
        resp = await (await Client.connect(d)).request("tools/call", {"name": "hook"})
        assert resp["error"]["code"] == -32602 and "unknown tool: hook" in resp["error"]["message"]
        assert not plain["b"].requests("tools/call")
    both = srv()
    async with core(both, prefix="never", fallback_target="b") as d:
        client = await Client.connect(d)
        resp = await client.request("tools/call", {"name": "hook", "arguments": {"text": "x"}})
        assert resp["result"]["structuredContent"] == {"echo": {"text": "x"}}
        assert [c["params"]["name"] for c in both["b"].requests("tools/call")] == ["hook"]
        assert not both["a"].requests("tools/call")
        # A listed name still goes to its owner, not to the fallback.
        await client.request("tools/call", {"name": "echo"})
        assert len(both["a"].requests("tools/call")) == 1
    prefixed = srv()
    async with core(prefixed, prefix="always", fallback_target="b") as d:
        client = await Client.connect(d)
        # A prefix naming a target keeps the name there; one naming none falls back whole.
        await client.request("tools/call", {"name": "a_hook"})
        assert [c["params"]["name"] for c in prefixed["a"].requests("tools/call")] == ["hook"]
        await client.request("tools/call", {"name": "x_hook"})
        assert [c["params"]["name"] for c in prefixed["b"].requests("tools/call")] == ["x_hook"]
    curated = srv()
    cfg_b = {"b": {"exclude": ["gone"]}}
    async with core(curated, prefix="never", fallback_target="b", curation=cfg_b) as d:
        resp = await (await Client.connect(d)).request("tools/call", {"name": "gone"})
        assert resp["error"]["code"] == -32602 and not curated["b"].requests("tools/call")


async def test_malformed_input_responses_are_a_protocol_error_and_reach_no_target() -> None:
    """SEP-2322: ``inputResponses`` that is not an object of objects is answered with
    -32602 by the gateway, whether or not a requestState comes with it (the target
    would otherwise run the tool and return a complete result)."""
    srv = servers()
    async with core(srv) as d:
        env = Envelope("2026-07-28", {}, {}, None)
        modern = RequestContext(Dispatcher.stateless(env), "http", envelope=env)
        for bad in (None, 7, [], {"user_name": 12345}, {"ok": {}, "bad": "yes"}):
            resp = await d.handle(modern, {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                           "params": {"name": "a_echo", "inputResponses": bad}})
            assert resp["error"]["code"] == -32602 and "inputResponses" in resp["error"]["message"], bad
        assert not srv["a"].requests("tools/call")
        resp = await d.handle(modern, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                       "params": {"name": "a_echo", "inputResponses": {"k": {"action": "decline"}}}})
        assert "result" in resp and len(srv["a"].requests("tools/call")) == 1


async def test_a_uri_no_target_lists_goes_to_the_only_target_or_the_fallback() -> None:
    """A server may accept a subscription to a URI it does not list (yet): alone, or as
    ``fallback_target``, it gets it; in a merged namespace without one it is unknown."""
    one = {"a": FakeServer({"echo": echo}, resources=("file:///a.txt",))}
    async with core(one, prefix="never") as d:
        resp = await (await Client.connect(d)).request("resources/subscribe", {"uri": "test://later"})
        assert resp["result"] == {} and one["a"].requests("resources/subscribe")
    plain = servers()
    async with core(plain, prefix="never") as d:
        resp = await (await Client.connect(d)).request("resources/subscribe", {"uri": "test://later"})
        assert resp["error"]["code"] == -32602 and "unknown resource" in resp["error"]["message"]
        assert not plain["a"].requests("resources/subscribe") and not plain["b"].requests("resources/subscribe")
    both = servers()
    async with core(both, prefix="never", fallback_target="b") as d:
        resp = await (await Client.connect(d)).request("resources/subscribe", {"uri": "test://later"})
        assert "result" in resp and both["b"].requests("resources/subscribe")
        assert not both["a"].requests("resources/subscribe")


class NoSecrets:
    """A policy: nobody may use b's 'secret' tool, and nobody sees it listed."""

    varies_per_caller = True

    def __init__(self) -> None:
        self.asked: list[Action] = []

    def authorize(self, ctx: RequestContext, action: Action) -> bool:
        self.asked.append(action)
        return not (action.target == "b" and action.name == "secret")

    def visible(self, ctx: RequestContext, kind: Kind, action: Action) -> bool:
        return self.authorize(ctx, action)

    def throttle(self, ctx: RequestContext, method: str, name: str | None) -> float | None:
        return None


async def test_the_authorize_step_sees_the_target_s_own_name_and_a_denial_looks_unknown() -> None:
    srv, policy = servers(), NoSecrets()
    async with core(srv, policy=policy) as d:
        client = await Client.connect(d)
        denied = await client.request("tools/call", {"name": "b_secret", "arguments": {"text": "x"}})
        unknown = await client.request("tools/call", {"name": "b_nothing"})
        assert denied["error"]["code"] == unknown["error"]["code"] == -32602
        assert denied["error"]["message"] == "unknown tool: b_secret"
        assert not srv["b"].requests("tools/call")  # never forwarded
        assert Action("tools/call", "b", name="secret", arguments={"text": "x"}, exposed="b_secret") in policy.asked
        ok = await client.request("tools/call", {"name": "b_echo", "arguments": {"text": "y"}})
        assert ok["result"]["content"][0]["text"] == "y"
        # The read of a resource goes through the same step, with the target's URI.
        await client.request("resources/read", {"uri": "a+file:///a.txt"})
        assert Action("resources/read", "a", uri="file:///a.txt", exposed="a+file:///a.txt") in policy.asked


async def test_the_filter_step_applies_to_every_list_and_marks_2026_lists_private() -> None:
    async with core(servers(), policy=NoSecrets(), limits={"page_size": 1}) as d:
        client = await Client.connect(d)
        names, cursor = [], None
        for _ in range(10):  # paged: the filter applies before paging, cursors stay valid
            resp = await client.request("tools/list", {"cursor": cursor} if cursor else {})
            names += [t["name"] for t in resp["result"]["tools"]]
            cursor = resp["result"].get("nextCursor")
            if cursor is None:
                break
        assert names == ["a_echo", "b_echo"]
        env = Envelope("2026-07-28", {}, {}, None)
        modern = RequestContext(Dispatcher.stateless(env), "http", envelope=env)
        resp = await d.handle(modern, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert resp["result"]["cacheScope"] == "private"


async def test_without_a_varying_policy_2026_lists_keep_the_targets_cache_hint() -> None:
    async with core(servers()) as d:
        env = Envelope("2026-07-28", {}, {}, None)
        modern = RequestContext(Dispatcher.stateless(env), "http", envelope=env)
        resp = await d.handle(modern, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert [t["name"] for t in resp["result"]["tools"]] == ["a_echo", "b_echo", "b_secret"]
        assert (resp["result"]["ttlMs"], resp["result"]["cacheScope"]) == (0, "private")


async def test_a_shared_target_is_subscribed_once_whatever_the_number_of_followers() -> None:
    srv = servers()
    async with core(srv) as d:
        one, two = await Client.connect(d), await Client.connect(d)
        for c in (one, two):
            assert "result" in await c.request("resources/subscribe", {"uri": "a+file:///a.txt"})
        assert [m["params"] for m in srv["a"].requests("resources/subscribe")] == [{"uri": "file:///a.txt"}]
        # Subscribed on the session that serves these clients' calls (their capability
        # set's), not the catalog session: a server's updates come from where it subscribed.
        (holder,) = [up for up, m in srv["a"].received if m.get("method") == "resources/subscribe"]
        catalog = srv["a"].sessions[0]
        assert holder is not catalog
        update = {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///a.txt"}}
        await catalog.dispatch(update)  # nobody followed it there
        for c in (one, two):
            assert c.outbox() == []
        # An update reaches both followers, with the URI as they know it.
        await holder.dispatch(update)
        for c in (one, two):
            assert [m["params"]["uri"] for m in c.outbox()] == ["a+file:///a.txt"]
        await one.request("resources/unsubscribe", {"uri": "a+file:///a.txt"})
        assert srv["a"].requests("resources/unsubscribe") == []  # two still follows it
        await d.close_session(two.session.id)  # the last follower leaves
        await asyncio.sleep(0)
        assert [m["params"] for m in srv["a"].requests("resources/unsubscribe")] == [{"uri": "file:///a.txt"}]
        assert d.gateway.subscriptions.uris("a") == []


async def test_log_lines_of_a_shared_process_reach_nobody_and_a_client_s_own_reach_only_it() -> None:
    srv = servers()
    async with core(srv) as d:
        quiet, chatty = await Client.connect(d), await Client.connect(d)
        await chatty.request("logging/setLevel", {"level": "debug"})
        await quiet.request("tools/call", {"name": "a_echo", "arguments": {}})
        await chatty.request("tools/call", {"name": "a_echo", "arguments": {}})
        # The target's catalog process, the shared one of quiet's capability set, chatty's own.
        _catalog, shared, own = srv["a"].sessions
        assert [s for s, m in srv["a"].received if m.get("method") == "tools/call"] == [shared, own]
        assert [m["params"] for m in srv["a"].requests("logging/setLevel")] == [{"level": "debug"}]
        await srv["a"].log(shared, "warning", "whose is this?")
        await srv["a"].log(own, "warning", "chatty's")
        assert [m["params"]["data"] for m in chatty.outbox()] == ["chatty's"]
        assert quiet.outbox() == []


async def slow_ask(server: FakeServer, session: FakeSession, msg: Message) -> Message:
    """Asks the client for sampling, unattributed, as a stdio server does."""
    answer = await server.ask(session, "sampling/createMessage", {"messages": [{"secret": msg["id"]}]})
    return {"result": {"content": [], "answer": answer}}


def blocking() -> tuple[ToolHandler, asyncio.Event, asyncio.Event]:
    """A tool that runs until released, and the events to see it start and release it."""
    started, hold = asyncio.Event(), asyncio.Event()

    async def blocks(_s: FakeServer, _f: FakeSession, _m: Message) -> Message:
        started.set()
        await hold.wait()
        return {"result": {"content": []}}

    return blocks, started, hold


async def test_a_client_is_never_asked_what_another_client_s_call_caused() -> None:
    blocks, started, hold = blocking()
    srv = {"a": FakeServer({"ask": slow_ask, "echo": echo, "blocks": blocks}), "b": FakeServer({})}
    async with core(srv) as d:
        able = await Client.connect(d, {"sampling": {}})
        asked: list[Message] = []

        async def answer(msg: Message) -> dict[str, Any]:
            asked.append(msg)
            return {"result": {"role": "assistant", "content": {"type": "text", "text": "mine"}}}

        able.on_request = answer
        plain = await Client.connect(d)
        # The client that can answer has its own process: its request is its own.
        resp = await able.request("tools/call", {"name": "a_ask"})
        assert resp["result"]["answer"]["result"]["content"]["text"] == "mine"
        assert len(asked) == 1
        # The other client's call, on the shared process, is refused cleanly; the able
        # client is not asked, even while it has a call in flight.
        pending = asyncio.ensure_future(able.request("tools/call", {"name": "a_blocks"}))
        await started.wait()
        resp = await plain.request("tools/call", {"name": "a_ask"})
        assert resp["result"]["answer"]["error"]["code"] == -32601
        assert len(asked) == 1 and plain.streamed == []
        hold.set()
        assert "result" in await pending


async def test_two_calls_in_flight_on_a_shared_process_leave_its_request_unanswered_by_either() -> None:
    blocks, started, hold = blocking()
    srv = {"a": FakeServer({"ask": slow_ask, "blocks": blocks}), "b": FakeServer({})}
    async with core(srv, limits={"max_client_processes": 0}) as d:  # everyone shares
        one, two = await Client.connect(d, {"sampling": {}}), await Client.connect(d, {"sampling": {}})
        pending = asyncio.ensure_future(one.request("tools/call", {"name": "a_blocks"}))
        await started.wait()
        resp = await two.request("tools/call", {"name": "a_ask"})
        assert "cannot be relayed" in resp["result"]["answer"]["error"]["message"]
        assert one.streamed == [] and two.streamed == []
        hold.set()
        assert "result" in await pending
        # No process of their own (the limit is 0): the catalog's, and their set's shared one.
        assert len(srv["a"].sessions) == 2


async def test_client_processes_are_bounded_per_target_and_stopped_when_idle() -> None:
    srv = servers()
    async with core(srv, limits={"max_client_processes": 1}) as d:
        first, second = await Client.connect(d, {"roots": {}}), await Client.connect(d, {"roots": {}})
        await first.request("tools/call", {"name": "a_echo", "arguments": {}})
        await second.request("tools/call", {"name": "a_echo", "arguments": {}})
        _catalog, own, shared = srv["a"].sessions  # second shares its capability set's process
        assert [s for s, m in srv["a"].received if m.get("method") == "tools/call"] == [own, shared]
        await d._reap_processes(0)  # idle for longer than 0 s: stopped
        assert own.closed.is_set() and "a" not in first.session.upstreams
        await second.request("tools/call", {"name": "a_echo", "arguments": {}})  # the slot is free
        assert len(srv["a"].sessions) == 4 and not srv["a"].sessions[3].closed.is_set()


async def test_a_server_request_for_a_capability_the_client_lacks_is_refused_to_the_target() -> None:
    async def asks(server: FakeServer, session: FakeSession, msg: Message) -> Message:
        answer = await server.ask(session, "sampling/createMessage", {"messages": []}, during=msg["id"])
        return {"result": {"content": [], "answer": answer}}

    srv = {"a": FakeServer({"ask": asks}), "b": FakeServer({})}
    async with core(srv, {"a": "http", "b": "http"}) as d:
        plain = await Client.connect(d)
        resp = await plain.request("tools/call", {"name": "a_ask"})
        assert resp["result"]["answer"]["error"]["code"] == -32601
        assert "sampling" in resp["result"]["answer"]["error"]["message"]
        assert plain.streamed == []  # the client was never asked

        able = await Client.connect(d, {"sampling": {}})

        async def answer(msg: Message) -> dict[str, Any]:
            return {"result": {"role": "assistant", "content": {"type": "text", "text": "ok"}}}

        able.on_request = answer
        resp = await able.request("tools/call", {"name": "a_ask"})
        assert resp["result"]["answer"]["result"]["content"]["text"] == "ok"
        assert [m["method"] for m in able.streamed] == ["sampling/createMessage"]


async def test_session_state_is_a_record_in_the_store() -> None:
    async with core(servers(), {"a": "http", "b": "stdio"}) as d:
        client = await Client.connect(d, {"roots": {}}, principal=type("P", (), {"key": "iss|alice"})())
        await client.request("logging/setLevel", {"level": "info"})
        await client.request("resources/subscribe", {"uri": "a+file:///a.txt"})
        stored = await d.sessions.store.get(client.session.id)
        assert stored is not None
        data = orjson.loads(orjson.dumps(stored.to_dict()))  # plain JSON all the way
        back = SessionRecord.from_dict(data)
        assert back == client.session.record
        assert (back.owner, back.log_level, back.capabilities) == ("iss|alice", "info", {"roots": {}})
        assert back.subscriptions == {"a+file:///a.txt"}
        assert back.upstream_ids == {"a": "a-2"}  # its own session on a (a-1 is the catalog's)
        await d.close_session(client.session.id)
        assert await d.sessions.store.get(client.session.id) is None
        assert await d.sessions.store.count() == 0


# -- session limits per client, unused sessions -------------------------------------


def _init(n: int = 0) -> Message:
    return {"jsonrpc": "2.0", "id": n, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}}


async def test_one_client_cannot_take_every_session_slot() -> None:
    async with core(servers(), limits={"max_sessions_per_client": 2, "max_sessions": 100}) as d:
        mine = [(await d.initialize(_init(), peer="10.0.0.1"))[0] for _ in range(2)]
        try:
            await d.initialize(_init(), peer="10.0.0.1")
            raise AssertionError("a third session of one address was accepted")
        except RPCError as exc:
            assert exc.code == -32000
            assert "limits.max_sessions_per_client" in exc.message and "10.0.0.1" in exc.message
        # Another address, and a principal (whatever its address), still get theirs.
        other, _ = await d.initialize(_init(), peer="10.0.0.2")
        alice = type("P", (), {"key": "iss|alice"})()
        for _ in range(2):
            await d.initialize(_init(), alice, peer="10.0.0.1")
        assert d.sessions.per_client == {"address 10.0.0.1": 2, "address 10.0.0.2": 1,
                                         "principal iss|alice": 2}
        # Ending a session frees its slot.
        await d.close_session(mine[0].id)
        await d.initialize(_init(), peer="10.0.0.1")
        await d.close_session(other.id)
        assert d.sessions.per_client == {"address 10.0.0.1": 2, "principal iss|alice": 2}


async def test_a_session_that_never_made_a_request_is_reaped_sooner() -> None:
    async with core(servers(), limits={"unused_session_timeout": 0.3}) as d:
        used, unused = await Client.connect(d), await Client.connect(d)
        streaming = await Client.connect(d)
        streaming.session.streams = 1  # an open GET stream: never idle
        await used.request("tools/call", {"name": "a_echo", "arguments": {}})
        deadline = asyncio.get_running_loop().time() + 10
        while unused.session.id in d.sessions.live:
            assert asyncio.get_running_loop().time() < deadline, "the unused session was not reaped"
            await asyncio.sleep(0.02)
        assert used.session.id in d.sessions.live and streaming.session.id in d.sessions.live
        assert d.sessions.per_client == {}  # no addresses in-process: nothing counted


async def test_a_lost_or_closed_upstream_session_refuses_calls_and_is_replaced() -> None:
    """``is_closed`` (what the per-call path reads) follows ``closed``, and the
    dispatcher opens a new session for a client whose own one was lost."""
    srv = servers()
    async with core(srv, limits={"max_client_processes": 1}) as d:
        client = await Client.connect(d, {"roots": {}})
        await client.request("tools/call", {"name": "a_echo", "arguments": {}})
        own = client.session.upstreams["a"]
        assert isinstance(own, FakeSession) and not own.is_closed
        own.lost("wire cut")
        assert own.is_closed and own.closed.is_set()
        try:
            await own.request("tools/list", {})
        except UpstreamError as exc:
            assert "wire cut" in str(exc)
        else:
            raise AssertionError("a lost session took a request")
        assert "result" in await client.request("tools/call", {"name": "a_echo", "arguments": {}})
        assert client.session.upstreams["a"] is not own
    closed = FakeSession("b", FakeServer())
    await closed.aclose("bye")
    assert closed.is_closed and closed.closed.is_set()
