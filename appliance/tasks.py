"""Ending asyncio tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended.

    `with suppress(CancelledError): await task` is the usual idiom, and it is wrong when
    the caller is itself being cancelled meanwhile: the caller's CancelledError is
    swallowed too and it carries on as if nothing had happened (seen as a daemon whose
    inbox was cancelled during a `StopMic` and which then never shut down). Here the
    task's own cancellation is absorbed and the caller's propagates.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
