"""What the listener's per-request shortcuts must keep: header names lowered exactly as
``bytes.lower()`` would (with the table bounded against a client inventing names), and
a POSTed body read whole however many ASGI events it came in, and a session's id
header made once but never stale."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mcpmux import fieldnames
from mcpmux.listener.http import HttpError, read_message
from mcpmux.session import ClientSession
from mcpmux.state import SessionRecord

BODY = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}})


def test_names_are_lowered_and_decoded() -> None:
    for name in (b"Content-Type", b"content-type", b"MCP-Session-Id", b"X-\xe9T"):
        low, text = fieldnames.lowered(name)
        assert low == name.lower()
        assert text == name.lower().decode("latin-1")
        assert fieldnames.lowered(name) == (low, text)  # the second time from the table


def test_the_table_is_bounded() -> None:
    table = fieldnames._NAMES  # Final (compiled code holds it): emptied, not replaced
    saved = dict(table)
    table.clear()
    try:
        for i in range(fieldnames.MAX_NAMES + 50):
            name = f"X-Made-Up-{i}".encode()
            assert fieldnames.lowered(name) == (name.lower(), name.lower().decode())
        assert len(table) == fieldnames.MAX_NAMES
    finally:
        table.clear()
        table.update(saved)


def _receive(*chunks: bytes) -> Any:
    events = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return events.pop(0)
    return receive


@pytest.mark.parametrize("parts", [1, 2, 5])
async def test_a_body_in_any_number_of_events(parts: int) -> None:
    step = -(-len(BODY) // parts)
    chunks = [BODY[i:i + step] for i in range(0, len(BODY), step)]
    assert len(chunks) == parts
    msg = await read_message(_receive(*chunks), {"content-type": "application/json"}, 1 << 20)
    assert msg == orjson.loads(BODY)


@pytest.mark.parametrize("ctype", ["application/json", "Application/JSON; charset=utf-8", " application/json "])
async def test_json_media_types_accepted(ctype: str) -> None:
    msg = await read_message(_receive(BODY), {"content-type": ctype}, 1 << 20)
    assert msg["id"] == 7


async def test_the_limit_holds_across_events() -> None:
    with pytest.raises(HttpError) as err:
        await read_message(_receive(BODY[:40], BODY[40:]), {"content-type": "application/json"}, 50)
    assert err.value.status == 413


def test_a_sessions_id_header_is_made_once_per_id() -> None:
    session = ClientSession(SessionRecord("abc", None, "2025-06-18"))
    line = session.id_line()
    assert line == b"mcp-session-id: abc\r\n" and session.id_bytes() == b"abc"
    assert session.id_line() is line  # kept, not made again
    session.id = "def"  # a replica may re-key a session
    assert session.id_line() == b"mcp-session-id: def\r\n" and session.id_bytes() == b"def"


def test_an_empty_session_id_still_gets_its_header() -> None:
    session = ClientSession(SessionRecord("", None, "2025-06-18"))
    assert session.id_line() == b"mcp-session-id: \r\n" and session.id_bytes() == b""
