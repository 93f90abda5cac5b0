"""The wall clock timers and alarms are kept against.

Timers are durations, stored as the UTC instant they end, so a reboot does not move
them; alarms are local wall times, so the next one is found in the local time zone
(across midnight and daylight-saving changes). A Pi has no real-time clock: its time
can jump when NTP syncs after boot, so waits are cut into short naps that look at the
clock again instead of one long sleep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Protocol

NAP_S = 30.0
"""The longest single sleep while waiting for a due time (a clock jump is seen this late)."""


class Clock(Protocol):
    """What the timers need to know about time."""

    def now(self) -> dt.datetime:
        """Now, timezone-aware, in the local zone."""
        ...

    async def sleep_until(self, when: dt.datetime) -> None:
        """Return at `when` (or a little later); may return early (callers look again)."""
        ...


class SystemClock:
    """The system's clock and local time zone (`TZ`, else /etc/localtime)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now().astimezone()

    async def sleep_until(self, when: dt.datetime) -> None:
        remaining = (when - self.now()).total_seconds()
        if remaining > 0:
            await asyncio.sleep(min(remaining, NAP_S))
