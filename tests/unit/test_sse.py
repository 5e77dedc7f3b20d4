"""The incremental SSE parser (``mcpmux.sse``) against the WHATWG event-stream rules.

Upstream servers split events across TCP chunks anywhere (inside a CRLF, inside a
UTF-8 character), use CRLF or LF, send comments as keep-alives, and rely on ``id``
and ``retry`` for resumption, so each of those is pinned here.
"""

from __future__ import annotations

import pytest

from mcpmux.sse import Event, Parser, encode

STREAM = (
    b": stream open\r\n\r\n"
    b"id: 1\r\nevent: endpoint\r\ndata: /messages?sessionId=abc\r\n\r\n"
    b'id: 2\ndata: {"jsonrpc":"2.0","method":"x","params":{"t":"caf\xc3\xa9 \xe2\x82\xac"}}\n\n'
    b"retry: 1500\ndata: line one\ndata: line two\n\n"
)
EXPECTED = [
    Event("endpoint", "/messages?sessionId=abc", "1", None),
    Event("message", '{"jsonrpc":"2.0","method":"x","params":{"t":"café €"}}', "2", None),
    Event("message", "line one\nline two", "2", 1500),
]


def feed_all(chunks: list[bytes]) -> tuple[list[Event], Parser]:
    p = Parser()
    out: list[Event] = []
    for c in chunks:
        out += p.feed(c)
    return out, p


def test_whole_stream() -> None:
    events, p = feed_all([STREAM])
    assert events == EXPECTED
    assert p.last_event_id == "2"
    assert p.retry == 1500


def test_byte_by_byte_gives_the_same_events() -> None:
    # Splits fall inside CRLFs, inside field names and inside multi-byte UTF-8.
    events, _ = feed_all([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert events == EXPECTED


@pytest.mark.parametrize("size", [2, 3, 5, 7, 13, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    events, _ = feed_all([STREAM[i : i + size] for i in range(0, len(STREAM), size)])
    assert events == EXPECTED


def test_crlf_is_a_line_end() -> None:
    events, _ = feed_all([b"event: message\r\ndata: x\r\n\r\n"])
    assert events == [Event("message", "x", None, None)]


def test_cr_split_from_its_lf_across_chunks() -> None:
    events, _ = feed_all([b"data: x\r", b"\n\r", b"\n"])
    assert [e.data for e in events] == ["x"]


def test_multi_line_data_joins_with_newlines() -> None:
    events, _ = feed_all([b"data: a\ndata:\ndata: c\n\n"])
    assert events[0].data == "a\n\nc"


def test_one_leading_space_is_stripped_not_more() -> None:
    events, _ = feed_all([b"data:x\n\ndata:  y\n\n"])
    assert [e.data for e in events] == ["x", " y"]


def test_event_is_dispatched_only_at_a_blank_line() -> None:
    p = Parser()
    assert p.feed(b"data: partial\n") == []
    assert p.feed(b"data: more") == []
    assert [e.data for e in p.feed(b"\n\n")] == ["partial\nmore"]


def test_comments_and_blank_lines_produce_nothing() -> None:
    events, _ = feed_all([b": keep-alive\n\n:\n\n\n\n: another\r\n\r\n"])
    assert events == []


def test_comment_inside_an_event_is_ignored() -> None:
    events, _ = feed_all([b"data: a\n: not data\ndata: b\n\n"])
    assert events[0].data == "a\nb"


def test_unknown_fields_are_ignored() -> None:
    events, _ = feed_all([b"foo: bar\ndata: x\nbaz\n\n"])
    assert events == [Event("message", "x", None, None)]


def test_field_without_colon_has_an_empty_value() -> None:
    events, _ = feed_all([b"data\n\n"])
    assert [e.data for e in events] == [""]


def test_ids_persist_and_track_the_last_one() -> None:
    p = Parser()
    events = p.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "7"), ("b", "7"), ("c", "8")]
    assert p.last_event_id == "8"


def test_id_of_an_event_without_data_still_counts() -> None:
    """WHATWG: the last event ID is set when an event is dispatched, even one with no
    data; a server may send ``id`` alone before it closes a stream for the client to resume."""
    p = Parser()
    p.feed(b"id: 42\n\n")
    assert p.last_event_id == "42"


def test_empty_id_resets_it() -> None:
    p = Parser()
    p.feed(b"id: 1\ndata: a\n\nid\ndata: b\n\n")
    assert p.last_event_id == ""


def test_retry_must_be_all_digits() -> None:
    p = Parser()
    p.feed(b"retry: 250\ndata: a\n\n")
    assert p.retry == 250
    p.feed(b"retry: 1e3\ndata: b\n\nretry: -5\ndata: c\n\nretry:\ndata: d\n\n")
    assert p.retry == 250


def test_empty_event_name_means_message() -> None:
    events, _ = feed_all([b"event:\ndata: x\n\n"])
    assert events[0].event == "message"


def test_leading_bom_is_ignored() -> None:
    events, _ = feed_all([b"\xef\xbb", b"\xbfdata: x\n\n"])
    assert [e.data for e in events] == ["x"]


def test_invalid_utf8_does_not_raise() -> None:
    events, _ = feed_all([b"data: \xff\xfe\n\n"])
    assert len(events) == 1


@pytest.mark.parametrize(
    ("data", "event", "id_"),
    [(b'{"a":1}', None, None), (b'{"a":1}', "message", "5"), (b"x", "endpoint", None)],
)
def test_encode_round_trips(data: bytes, event: str | None, id_: str | None) -> None:
    events, _ = feed_all([encode(data, event, id_)])
    assert events == [Event(event or "message", data.decode(), id_, None)]
