"""The deadlines of calls in flight, on one timer (``session.Deadlines``): each call
expires on its own, progress pushes it back, a question to the client pauses it, and
the timer re-arms for the next deadline. ``test_call_lifecycle.py`` covers the same
through the gateway; these pin the keeper itself."""

from __future__ import annotations

import asyncio
from typing import Any

from mcpmux.session import SWEEP_GAP, Call, ClientSession, Deadlines
from mcpmux.state import SessionRecord


def call(timeout: float) -> Call:
    c = Call(ClientSession(SessionRecord("s", None, "2025-06-18")), "t", None, None)
    c.timeout = timeout
    return c


def parked() -> asyncio.Task[Any]:
    """A task standing for a call waiting on its target."""
    return asyncio.ensure_future(asyncio.Event().wait())


async def cancelled(task: asyncio.Task[Any]) -> bool:
    """Waits for the task to end; True if it was cancelled."""
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


async def test_each_call_expires_on_its_own_and_the_timer_rearms_for_the_next() -> None:
    d = Deadlines()
    quick, slow, gone = call(0.05), call(0.15), call(0.05)
    tq, ts, tg = parked(), parked(), parked()
    d.watch(slow, ts)
    d.watch(quick, tq)  # earlier than the armed deadline: re-armed for it
    d.watch(gone, tg)
    d.forget(gone)  # ended in time: never cancelled
    assert await cancelled(tq) and quick.expired
    assert not ts.done() and not slow.expired, "only the expired call is cancelled"
    assert d.at == slow.expires, "the timer waits for the next deadline"
    assert await cancelled(ts) and slow.expired
    assert not tg.done() and not gone.expired
    assert d.at == float("inf"), "nothing left to wait for: the timer is not re-armed"
    tg.cancel()
    d.close()


async def test_word_from_the_target_pushes_the_deadline_back() -> None:
    d = Deadlines()
    c, task = call(0.2), parked()
    d.watch(c, task)
    for _ in range(6):  # 0.3 s in all, never 0.2 s of silence
        await asyncio.sleep(0.05)
        c.keep_alive()
    assert not task.done() and not c.expired
    assert await cancelled(task) and c.expired, "silence after the last word expires it"
    d.close()


async def test_a_question_to_the_client_pauses_the_deadline_and_its_answer_restarts_it() -> None:
    d = Deadlines()
    c, task = call(0.05), parked()
    d.watch(c, task)
    c.pause()
    await asyncio.sleep(0.15)  # the armed timer fired meanwhile and found nothing due
    assert not task.done() and d.at == float("inf")
    c.keep_alive()  # the answer: the timer is armed again
    assert d.at == c.expires
    assert await cancelled(task) and c.expired
    c.keep_alive()  # late word after expiry changes nothing
    assert d.at == float("inf")
    d.close()


async def test_close_disarms_the_timer() -> None:
    d = Deadlines()
    c, task = call(0.05), parked()
    d.watch(c, task)
    d.close()
    await asyncio.sleep(0.1)
    assert not task.done() and not c.expired
    task.cancel()


async def test_many_staggered_deadlines_cost_a_bounded_number_of_sweeps() -> None:
    """A hung target with many calls in flight: each sweep reads every call, so the
    sweeps are at least SWEEP_GAP apart rather than one per deadline (which made it
    quadratic in the calls in flight)."""
    d = Deadlines()
    calls = [(call(0.01 + i * 0.001), parked()) for i in range(200)]  # deadlines over 0.2 s
    for c, task in calls:
        d.watch(c, task)
    for c, task in calls:
        assert await cancelled(task) and c.expired
    assert 2 <= d.sweeps <= 0.21 / SWEEP_GAP + 2, d.sweeps
    d.close()
