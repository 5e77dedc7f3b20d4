"""2026-07-28 requests on the same ``/mcp`` endpoint: no session, an envelope each.

The era is decided per message: a request with no ``Mcp-Session-Id`` whose
``_meta`` names a protocol version is modern. It is validated (envelope and
mirrored headers), answered by the dispatcher with a stateless session and decorated
with ``resultType`` and ``serverInfo``. ``subscriptions/listen`` holds its
response stream open for change notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson

from .. import era
from ..context import RequestContext
from ..dispatch import Dispatcher
from ..gateway import Gateway
from ..jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, Message, RPCError, error
from ..multiplexer.servers import VirtualServer
from ..protocol import CHANGED
from ..session import ClientSession
from ..sse import encode
from ..tasks import race
from .h1 import Cycle
from .streams import SSE_HEADERS, ResponseStream, send_json

log = logging.getLogger("mcpmux.listener.modern")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Errors the 2026 transport answers with HTTP 400 (envelope and header problems).
BAD_REQUEST: Final = {era.HEADER_MISMATCH, era.MISSING_CAPABILITY, era.UNSUPPORTED_VERSION}
LISTEN_FLAGS: Final = {
    "toolsListChanged": CHANGED["tools"],
    "promptsListChanged": CHANGED["prompts"],
    "resourcesListChanged": CHANGED["resources"],
}
KEEPALIVE: Final = 15.0
_listen_ids = itertools.count(1)


def decorate(gateway: Gateway, resp: Message) -> Message:
    """Results carry ``resultType`` (absent from handshake-era targets) and who we are."""
    res = resp.get("result")
    if not isinstance(res, dict):
        return resp
    meta = res.get("_meta")
    meta = {**meta, era.K_SERVER_INFO: gateway.server_info()} if isinstance(meta, dict) else {
        era.K_SERVER_INFO: gateway.server_info()
    }
    out = {**res, "_meta": meta}
    out.setdefault("resultType", "complete")
    return {**resp, "result": out}


async def serve_modern(
    dispatcher: Dispatcher, msg: Message, headers: dict[str, str], receive: Receive, send: Send,
    principal: Any = None, server: VirtualServer | None = None, cycle: Cycle | None = None,
) -> None:
    gateway = dispatcher.gateway
    rid = msg["id"]
    if msg["method"] in ("initialize", "ping"):
        note = f"{msg['method']} does not exist in protocol 2026-07-28 (stateless: no handshake)"
        await send_json(send, 404, error(rid, METHOD_NOT_FOUND, note))
        return
    try:
        env = era.check_envelope(msg, headers)
        if msg["method"] == "tools/call":
            params = msg.get("params") or {}
            route = gateway.view.tools.get(params.get("name"))  # type: ignore[arg-type]
            if route is not None:
                schema = gateway.view.tool_defs.get(params["name"], {}).get("inputSchema")
                era.check_param_headers(schema, params.get("arguments"), headers)
    except RPCError as exc:
        await send_json(send, 400, exc.to_message(rid))
        return
    session = dispatcher.stateless(env, principal)
    if msg["method"] == "subscriptions/listen":
        await _listen(dispatcher, session, msg, receive, send)
        return
    stream = ResponseStream("", send, [], False, cycle)
    # 2026: closing the response stream is the cancellation (a MUST of the transport);
    # a held handshake call is then cancelled on its target too.
    ctx = RequestContext(session, "http", headers, stream, principal, envelope=env, server=server)
    try:
        resp = await (_answer_unless_gone(dispatcher, ctx, msg, cycle) if cycle is not None
                      else _answer_or_gone(dispatcher, ctx, msg, receive))
    except _ClientGone:
        log.debug("modern request %s: the client closed its stream; cancelled", msg.get("method"))
        return
    except Exception:
        log.exception("modern request %s failed", msg.get("method"))
        resp = error(rid, -32603, "internal gateway error (see the gateway log)")
    code = (resp.get("error") or {}).get("code")
    status = 400 if code in BAD_REQUEST else 404 if code == METHOD_NOT_FOUND else 200
    await stream.finish(decorate(gateway, resp), status)


class _ClientGone(Exception):
    """The client closed the request's stream before its answer."""


async def _answer_unless_gone(dispatcher: Dispatcher, ctx: RequestContext, msg: Message, cycle: Cycle) -> Message:
    """The gateway's own listener calls back on a hang-up: the call runs in this task,
    which the callback cancels (no second task per request)."""
    task = asyncio.current_task(dispatcher.loop)
    assert task is not None
    gone = False

    def hung_up() -> None:
        nonlocal gone
        gone = True
        task.cancel()

    cycle.on_disconnect(hung_up)
    try:
        return await dispatcher.handle(ctx, msg)
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise _ClientGone from None
    finally:
        cycle.on_disconnect(None)


async def _answer_or_gone(dispatcher: Dispatcher, ctx: RequestContext, msg: Message, receive: Receive) -> Message:
    """Under another ASGI server: the call in a task of its own, raced against ``receive``."""
    work = asyncio.ensure_future(dispatcher.handle(ctx, msg))
    await race((work, asyncio.ensure_future(_disconnected(receive))))
    if work.cancelled():
        raise _ClientGone
    return work.result()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _listen(
    dispatcher: Dispatcher, session: ClientSession, msg: Message, receive: Receive, send: Send
) -> None:
    """``subscriptions/listen``: acknowledge, then relay what the client opted in to."""
    rid = msg["id"]
    wanted = (msg.get("params") or {}).get("notifications") or {}
    if not isinstance(wanted, dict):
        await send_json(send, 400, error(rid, INVALID_PARAMS, "params.notifications must be an object"))
        return
    accepted: dict[str, Any] = {k: True for k in LISTEN_FLAGS if wanted.get(k) is True}
    uris = wanted.get("resourceSubscriptions") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        await send_json(send, 400, error(rid, INVALID_PARAMS, "resourceSubscriptions must be a list of URIs"))
        return
    session.id = f"listen-{next(_listen_ids)}"
    kinds = {LISTEN_FLAGS[k] for k in accepted}
    # Registered before subscribing: an update that arrives before our acknowledgement
    # waits in the queue and is sent right after it, never lost.
    dispatcher.sessions.listeners[session.id] = (session, kinds)
    tag = {era.K_SUBSCRIPTION: rid}
    try:
        subscribed = [u for u in uris if await dispatcher.follow(session, u)]
        if subscribed:
            accepted["resourceSubscriptions"] = subscribed
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"_meta": tag, "notifications": accepted},
        }
        await send({"type": "http.response.body", "body": encode(orjson.dumps(ack)), "more_body": True})

        async def pump() -> None:
            while True:
                try:
                    note = await asyncio.wait_for(session.outbox.get(), KEEPALIVE)
                except TimeoutError:
                    await send({"type": "http.response.body", "body": b":\n\n", "more_body": True})
                    continue
                params = note.get("params") or {}
                meta = params.get("_meta")
                meta = meta if isinstance(meta, dict) else {}
                tagged = {**note, "params": {**params, "_meta": {**meta, **tag}}}
                await send({"type": "http.response.body", "body": encode(orjson.dumps(tagged)), "more_body": True})

        await race([asyncio.ensure_future(pump()), asyncio.ensure_future(_disconnected(receive))])
    except BaseException as exc:
        await _stop_listening(dispatcher, session)
        raise exc  # by name, not a finally: docs/architecture.md, "Compiled modules"
    await _stop_listening(dispatcher, session)
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b""})


async def _stop_listening(dispatcher: Dispatcher, session: ClientSession) -> None:
    dispatcher.sessions.listeners.pop(session.id, None)
    await dispatcher.unfollow_all(session)
