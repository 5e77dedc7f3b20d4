"""The access line's pieces that the hot path builds by hand (see docs/benchmarks.md,
"Counting instructions"): the caller's key, the milliseconds as numbers and as text,
the time stamp, and the line written from arguments as from a dict."""

from __future__ import annotations

import io
import time

from mcpmux.context import owner_key
from mcpmux.observability.access import AccessLog, _decimal
from mcpmux.observability.observer import milliseconds
from mcpmux.policy.auth import Principal


def test_owner_key_is_the_principals_key_or_none() -> None:
    alice = Principal(subject="alice", claims={}, scopes=frozenset(), expires_at=0.0, key="https://idp|alice")
    assert owner_key(alice) == "https://idp|alice"
    assert owner_key(None) is None
    assert owner_key(object()) is None  # anything without a key, as before


def test_milliseconds_keep_three_decimals_and_print_as_such() -> None:
    assert repr(milliseconds(0.0012344)) == "1.234"
    assert repr(milliseconds(0.0012346)) == "1.235"
    assert repr(milliseconds(2.5)) == "2500.0"
    assert repr(milliseconds(0.0000004)) == "0.0"
    for us in range(0, 5_000_000, 997):  # as round() would have it, at most 3 decimals
        ms = milliseconds(us / 1e6)
        assert ms == round(us / 1000, 3) and len(repr(ms).split(".")[1]) <= 3, (us, ms)


def test_time_stamps_carry_zero_padded_milliseconds() -> None:
    now = 1_700_000_000.0071
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    assert AccessLog(io.StringIO(), True)._time(now) == stamp + ".007Z"
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + 0.9))
    assert AccessLog(io.StringIO(), False)._time(now + 0.9) == local + ",907"


def test_a_text_line_spells_every_field() -> None:
    stream = io.StringIO()
    log = AccessLog(stream, False)
    log.write({"event": "access", "session": "0123abcd", "principal": None, "transport": "http",
               "method": "tools/call", "target": "clock", "tool": "now", "outcome": "ok",
               "duration_ms": milliseconds(0.0042), "bytes": 57})
    log.flush()
    assert stream.getvalue().endswith(
        " INFO    mcpmux.access: event=access session=0123abcd principal=- transport=http method=tools/call "
        "target=clock tool=now outcome=ok duration_ms=4.2 bytes=57\n")


def test_milliseconds_print_as_str_would_print_them() -> None:
    for us in [*range(0, 5_000_000, 997), 1_000, 10_000, 123_000_000, 999, 1]:
        ms = milliseconds(us / 1e6)
        assert _decimal(ms) == str(ms), (us, ms)


def test_the_line_from_arguments_is_the_line_from_fields() -> None:
    by_dict, by_args = io.StringIO(), io.StringIO()
    fields = {"event": "access", "session": None, "principal": "https://idp|a b", "transport": "http",
              "method": "tools/call", "target": None, "tool": 'say "hi"', "outcome": "tool_error",
              "duration_ms": milliseconds(0.25), "bytes": 0}
    from_dict = AccessLog(by_dict, False)
    from_dict.write(fields)
    from_dict.flush()
    from_args = AccessLog(by_args, False)
    from_args.text(None, "https://idp|a b", "http", "tools/call", None, 'say "hi"', "tool_error",
                   milliseconds(0.25), 0)
    from_args.flush()
    expected = ('INFO    mcpmux.access: event=access session=- principal="https://idp|a b" transport=http '
                'method=tools/call target=- tool="say \\"hi\\"" outcome=tool_error duration_ms=250.0 bytes=0\n')
    assert by_dict.getvalue().split(" ", 2)[2] == expected
    assert by_args.getvalue().split(" ", 2)[2] == expected
