"""Hardening, as pure functions: the SSE parser's limit and the secret registry."""

from __future__ import annotations

import logging

import pytest

from mcpmux import redact
from mcpmux.config import ConfigError, parse_config
from mcpmux.sse import EventTooLarge, Parser

# ------------------------------------------------------------------------ SSE limit


def test_endless_line_is_refused_at_the_limit() -> None:
    p = Parser(max_event=1000)
    p.feed(b"data: " + b"x" * 900)
    with pytest.raises(EventTooLarge) as info:
        for _ in range(10):
            p.feed(b"x" * 100)  # never a newline
    assert info.value.limit == 1000


def test_many_data_lines_of_one_event_count_together() -> None:
    p = Parser(max_event=1000)
    with pytest.raises(EventTooLarge):
        for _ in range(20):
            p.feed(b"data: " + b"y" * 90 + b"\n")


def test_events_under_the_limit_pass_and_the_count_restarts_per_event() -> None:
    p = Parser(max_event=1000)
    for _ in range(50):
        events = p.feed(b"data: " + b"z" * 500 + b"\n\n")
        assert len(events) == 1 and len(events[0].data) == 500


def test_one_chunk_holding_a_huge_line_is_refused() -> None:
    with pytest.raises(EventTooLarge):
        Parser(max_event=100).feed(b"data: " + b"x" * 200 + b"\n\n")


# ------------------------------------------------------------------------ redaction


@pytest.fixture(autouse=True)
def _clean_registry() -> None:
    redact.clear()


def test_redact_masks_registered_values_and_bearer_credentials() -> None:
    redact.register("Bearer abcd-1234-efgh")
    redact.register("xyz")  # too short: never masked (it would mask ordinary words)
    text = "sent Authorization: Bearer abcd-1234-efgh; token abcd-1234-efgh; xyz"
    assert redact.redact(text) == "sent Authorization: ***; token ***; xyz"


def test_config_env_expansions_and_headers_are_registered_and_errors_masked() -> None:
    text = """
limits:
  page_size: ${SECRET}
targets:
  - name: a
    http: {url: "http://x/mcp", headers: {X-Api-Key: literal-key-123}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={"SECRET": "s3cr3t-value"})
    assert "s3cr3t-value" not in str(info.value), str(info.value)
    assert "page_size" in str(info.value)
    assert redact.redact("k=literal-key-123 s=s3cr3t-value") == "k=*** s=***"


def test_log_filter_masks_messages_args_and_tracebacks() -> None:
    redact.register("hunter2-pass")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", ("hunter2-pass",), None)
    try:
        raise ValueError("boom hunter2-pass")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert redact.RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "hunter2-pass" not in formatted and "got ***" in formatted and "boom ***" in formatted
