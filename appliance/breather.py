"""Letting the event loop turn in a loop that may never wait.

`await queue.get()` and a websocket's `recv()` return at once, without yielding, while
items are queued: a task draining a backlog of thousands holds the loop until it is
empty, and nothing else runs meanwhile (a Live server's message flood held the daemon's
loop for seconds, and `status` on the control socket waited that long). Such a loop
calls `await breather.breathe()` once per item: it yields to the loop when the task has
held it for `every_s`, and costs a clock read otherwise.
"""

from __future__ import annotations

import asyncio
import time

DEFAULT_EVERY_S = 0.005
"""The longest a breathing task holds the loop: a few of these per control request."""


class Breather:
    """Yields to the event loop once the caller has held it for `every_s`."""

    def __init__(self, every_s: float = DEFAULT_EVERY_S) -> None:
        self.every_s = every_s
        self._since = time.monotonic()

    async def breathe(self) -> None:
        """Yield if `every_s` passed since the last yield (a wait elsewhere counts too:
        one yield too many is a loop turn, cheap)."""
        if time.monotonic() - self._since >= self.every_s:
            await asyncio.sleep(0)
            self._since = time.monotonic()
