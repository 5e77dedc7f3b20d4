"""Newline-delimited JSON as the reference server streams it on application/json."""

from __future__ import annotations

import orjson
import pytest

from mcpmux.jsonlines import LineParser, messages
from mcpmux.sse import EventTooLarge


def test_lines_split_across_chunks_and_blank_lines_skipped() -> None:
    p = LineParser(1024)
    assert p.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert p.feed(b':2}\r\n\n') == [b'{"b":2}']
    assert p.feed(b"") == []


def test_an_endless_line_is_refused() -> None:
    p = LineParser(8)
    p.feed(b"12345")
    with pytest.raises(EventTooLarge):
        p.feed(b"67890")


def test_a_body_is_one_value_even_pretty_printed_else_one_per_line() -> None:
    assert messages(b'{\n  "id": 1\n}\n') == [{"id": 1}]
    body = b'{"method":"notifications/progress"}\n{"id":1,"result":{}}'
    assert messages(body) == [{"method": "notifications/progress"}, {"id": 1, "result": {}}]
    with pytest.raises(orjson.JSONDecodeError):
        messages(b"not json")
