"""Control clients waiting on a turn's transcript (`appliance ask`, `say`).

A listener gets the transcript lines of the turn its request starts, then either the
turn's end or why the conversation ended without it. Kept out of `app.py` so that the
Live session (which produces the lines) and the control verbs (which wait on them)
meet here rather than in the wiring.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from appliance.daemon import state
from appliance.daemon.inbox import Item, Request
from appliance.daemon.verbs import TurnIncomplete

Line = tuple[str, str] | TurnIncomplete | None
"""(role, text); or why the turn will not complete; or None once it has."""


class TranscriptListeners:
    """The clients waiting on a turn, each with its own queue of lines."""

    def __init__(self, post: Callable[[Item], None]) -> None:
        self._post = post
        self._queues: list[asyncio.Queue[Line]] = []

    async def next_turn(self, item: state.Event) -> AsyncIterator[tuple[str, str]]:
        """Post `item` and yield the transcript lines until the turn ends; raises
        `TurnIncomplete` when the conversation ends first (dropped, stopped, an error)."""
        queue: asyncio.Queue[Line] = asyncio.Queue()
        self._queues.append(queue)
        request = Request(item)
        try:
            self._post(request)
            while (line := await queue.get()) is not None:
                if isinstance(line, TurnIncomplete):
                    raise line
                yield line
        finally:
            request.withdrawn = True  # the caller left: not run if still queued
            self._queues.remove(queue)

    def notify(self, line: Line) -> None:
        """Give every waiting client `line`."""
        for queue in self._queues:
            queue.put_nowait(line)
