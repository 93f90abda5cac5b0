"""A clock the test moves by hand, in a time zone of its choosing."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo


class ManualClock:
    """Stands still until `advance()` or `set()`; sleepers wake when it moves."""

    def __init__(self, start: dt.datetime, zone: str = "UTC") -> None:
        self.zone = ZoneInfo(zone)
        self._now = start.astimezone(self.zone)
        self._moved = asyncio.Event()

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = when.astimezone(self.zone)
        self._moved.set()
        self._moved = asyncio.Event()

    def advance(self, seconds: float) -> None:
        # Real seconds (through UTC), not wall-clock ones across a daylight-saving change.
        self.set(self._now.astimezone(dt.UTC) + dt.timedelta(seconds=seconds))

    async def sleep_until(self, when: dt.datetime) -> None:
        if when > self._now:
            await self._moved.wait()
