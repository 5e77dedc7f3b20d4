"""The result store's own rules, with a clock the test moves (``results.py``).

End to end (real clients, a real target) is in tests/e2e/test_oversized_results.py;
here: the hot path serialises nothing, the cut text's JSON fits its budget whatever
it escapes, and expiry and ownership follow the clock and the owner exactly.
"""

from __future__ import annotations

import orjson
import pytest

from mcpmux import results
from mcpmux.config import LimitsConfig
from mcpmux.results import ResultStore, _head


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock | None = None, **limits: object) -> ResultStore:
    config = LimitsConfig(**{"max_result_bytes": 4096, **limits})  # type: ignore[arg-type]
    return ResultStore(lambda: config, clock or Clock())


def big(n: int) -> dict[str, object]:
    return {"content": [{"type": "text", "text": "é\n\"" * n}], "isError": False}


def test_a_measured_result_under_the_limit_is_not_serialised(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> bytes:
        raise AssertionError("serialised on the hot path")

    monkeypatch.setattr(results.orjson, "dumps", boom)
    res = {"content": [{"type": "text", "text": "hi"}]}
    assert store().limit(res, 4000, "session:a") is res


def test_an_unmeasured_result_is_measured_once() -> None:
    res = big(10)
    assert store().limit(res, None, "session:a") is res
    assert store().limit(res, 10**9, "session:a") is res  # the transport's count was high; the real size fits


@pytest.mark.parametrize("budget", [0, 1, 7, 100, 1001])
def test_the_cut_text_fits_its_budget_as_json(budget: int) -> None:
    text = "é\n\"\x01" * 500
    part = _head(text, budget)
    assert text.startswith(part)
    assert len(orjson.dumps(part)) <= max(budget, 2)


async def test_expiry_and_owner_follow_the_clock() -> None:
    clock = Clock()
    s = store(clock, result_ttl=10)
    cut = s.limit(big(5000), None, "session:a")
    uri = cut["content"][-1]["uri"]
    assert len(orjson.dumps(cut)) <= 4096
    assert await s.read(uri, "session:b") is None
    assert await s.read(uri + "x", "session:a") is None
    found = await s.read(uri, "session:a")
    assert found is not None and found["contents"][0]["text"] == "é\n\"" * 5000
    clock.now += 9.9
    assert await s.read(uri, "session:a") is not None
    clock.now += 0.2
    assert await s.read(uri, "session:a") is None
    assert len(s) == 0 and s.memory_bytes == 0
    s.close()


def test_off_when_zero() -> None:
    res = big(100_000)
    assert store(max_result_bytes=0).limit(res, None, "session:a") is res
