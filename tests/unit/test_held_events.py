"""A held call's events (``mrtr.Continuation``): one future per waiting request, and
nothing the call produced is lost to a request that stopped waiting."""

from __future__ import annotations

import asyncio

from mcpmux.mrtr import Continuation


async def test_an_event_before_anyone_waits_is_kept_for_the_first_waiter() -> None:
    held = Continuation("c", "t")
    held.put(("response", {"result": {}}, None))
    assert await held.next_event() == ("response", {"result": {}}, None)


async def test_a_waiter_whose_client_went_does_not_swallow_the_event() -> None:
    held = Continuation("c", "t")
    gone = asyncio.ensure_future(held.next_event())
    await asyncio.sleep(0)  # waiting now
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    held.put(("response", {"result": {"n": 1}}, None))
    assert await held.next_event() == ("response", {"result": {"n": 1}}, None)


async def test_a_newer_waiter_takes_over_and_the_older_gets_none() -> None:
    held = Continuation("c", "t")
    older = asyncio.ensure_future(held.next_event())
    await asyncio.sleep(0)
    newer = asyncio.ensure_future(held.next_event())
    assert await older is None
    held.put(("error", "boom", None))
    assert await newer == ("error", "boom", None)
