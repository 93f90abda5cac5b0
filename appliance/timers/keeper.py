"""Waits for the next timer or alarm and hands it over when it is due.

Runs as one task beside the daemon's inbox: it sleeps until the first entry is due (in
naps, the clock may jump), calls `on_due(entry)` and books it as rung. At start, what
came due while the service was down rings if it is less than `MISSED_GRACE_S` late; older
ones are logged as missed (a 7:00 alarm should not go off at noon after a power cut).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from appliance.tasks import cancel_and_wait
from appliance.timers.book import Entry, TimerBook
from appliance.timers.clock import Clock, SystemClock

log = logging.getLogger(__name__)

MISSED_GRACE_S = 600.0


class TimerKeeper:
    """The book plus the task that rings it. Changes go through here so the wait
    starts over whenever something is set or cancelled."""

    def __init__(
        self,
        state_dir: Path,
        on_due: Callable[[Entry], None],
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.book = TimerBook(state_dir)
        self.on_due = on_due
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._catch_up()
        self._task = asyncio.create_task(self._run(), name="timers")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    # -- what the model and the control socket do ------------------------------------

    def add_timer(self, seconds: float, label: str = "") -> Entry:
        entry = self.book.add_timer(seconds, label, self.clock.now())
        self._poke("set", entry)
        return entry

    def add_alarm(self, at: str, label: str = "", weekdays: list[int] | None = None) -> Entry:
        entry = self.book.add_alarm(at, label, weekdays or [], self.clock.now())
        self._poke("set", entry)
        return entry

    def cancel(self, entry_id: str) -> Entry | None:
        entry = self.book.cancel(entry_id)
        if entry is not None:
            self._poke("cancelled", entry)
        return entry

    def listing(self) -> list[dict[str, object]]:
        zone = self.clock.now().tzinfo
        return [entry.public(zone) for entry in self.book.upcoming()]

    # -- the wait ----------------------------------------------------------------------

    def _poke(self, what: str, entry: Entry) -> None:
        log.info(
            "%s %s %s, rings %s",
            what,
            entry.id,
            entry.describe(),
            entry.due.astimezone(self.clock.now().tzinfo).isoformat(timespec="seconds"),
        )
        self._changed.set()

    def _catch_up(self) -> None:
        now = self.clock.now()
        for entry in self.book.upcoming():
            late = (now - entry.due).total_seconds()
            if late > MISSED_GRACE_S:
                log.warning(
                    "missed %s %s: it was due %s while the appliance was off (%.0f min ago)",
                    entry.id,
                    entry.describe(),
                    entry.due.astimezone(now.tzinfo).isoformat(timespec="minutes"),
                    late / 60,
                )
                self.book.rang(entry, now)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            entry = self.book.next_due()
            now = self.clock.now()
            if entry is not None and entry.due <= now:
                self.book.rang(entry, now)
                late = (now - entry.due).total_seconds()
                log.info("%s %s is due (%.1f s late)", entry.id, entry.describe(), max(0, late))
                self.on_due(entry)
                continue
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._changed.wait())]
            if entry is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(entry.due)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
