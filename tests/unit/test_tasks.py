"""Ending tasks: the caller's own cancellation is never swallowed."""

from __future__ import annotations

import asyncio

import pytest

from appliance.tasks import cancel_and_wait


async def test_the_task_ends_and_its_cancellation_stays_with_it() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_caller_cancelled_while_it_waits_is_cancelled() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # takes a while to end, as a real part may
            raise

    async def caller(after: list[str]) -> None:
        inner = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await cancel_and_wait(inner)
        after.append("carried on")  # must not happen: the caller was cancelled

    after: list[str] = []
    outer = asyncio.create_task(caller(after))
    await asyncio.sleep(0.05)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert after == []
