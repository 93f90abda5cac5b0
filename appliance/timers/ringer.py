"""The sound of a timer or alarm: a repeating beep pattern on the speaker.

It plays at the user's volume but never below `[timers] ring_volume` (a timer set at 5 %
must still be heard across the kitchen) and stops on a press, `appliance stop`, or after
`ring_max_s`, so a timer nobody hears does not beep all day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from appliance.audio import dsp
from appliance.audio.playback import PLAYBACK_RATE, Playback
from appliance.audio.volume import Volume
from appliance.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PATTERN = [
    (1046.5, 1046.5, 0.12),
    (0.0, 0.0, 0.08),
    (1046.5, 1046.5, 0.12),
    (0.0, 0.0, 0.08),
    (1046.5, 1046.5, 0.12),
    (0.0, 0.0, 0.7),
]
"""Three short high beeps and a pause (1.2 s): the kitchen timer everyone knows."""


class Ringer:
    """Rings until `stop()` or `max_s`; then calls `on_ended` (not after `stop()`)."""

    def __init__(
        self,
        playback: Playback,
        volume: Volume | None,
        *,
        floor_percent: int,
        max_s: float,
        on_ended: Callable[[], None],
    ) -> None:
        self.playback = playback
        self.volume = volume
        self.floor_percent = floor_percent
        self.max_s = max_s
        self.on_ended = on_ended
        self._pcm = dsp.tone(PLAYBACK_RATE, PATTERN, level=0.5)
        self._task: asyncio.Task[None] | None = None

    @property
    def ringing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.ringing:
            return
        if self.volume is not None:
            self.volume.set_floor(self.floor_percent)
        self._task = asyncio.create_task(self._ring(), name="ringer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel_and_wait(task)
            await self.playback.stop()
        self._restore()

    async def _ring(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.max_s
        try:
            while loop.time() < end:
                self.playback.enqueue(self._pcm)
                if not await self.playback.drain():
                    await asyncio.sleep(0.2)  # a stopped or failed speaker: do not spin
        finally:
            self._restore()
        log.info("ringing stopped after %.0f s: nobody answered", self.max_s)
        self._task = None
        self.on_ended()

    def _restore(self) -> None:
        if self.volume is not None:
            self.volume.set_floor(0)
