"""The microphone -> session path of one conversation, as the state machine directs it.

`MicPump` is the one place that decides whether a captured period may leave the device.
It follows the machine's mic actions literally: `keep` buffers audio on the device while
the session connects (pre-roll first, so the first word is not clipped), `stream` sends
what was kept and then live audio, `stop` sends nothing more. Outside `stream` there is
no path from the microphone to the network at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from appliance.audio.capture import Capture, Period

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]


class _Periods(Protocol):
    def __aiter__(self) -> _Periods: ...

    async def __anext__(self) -> Period: ...


class MicPump:
    """Moves capture periods to a sink (the live client) only while told to stream."""

    def __init__(self, capture: Capture) -> None:
        self._capture = capture
        self._mode = "off"  # off | keeping | streaming
        self._kept: list[bytes] = []
        self._sink: Sink | None = None
        self._skip_before_ns = 0
        self._task: asyncio.Task[None] | None = None
        self.sent_bytes = 0
        """Mic audio handed to the sink over the pump's life (for status and tests)."""

    async def keep(self, preroll: bool) -> None:
        """Buffer audio for a session that is not ready yet; the pre-roll first."""
        if self._mode == "streaming":
            self._mode = "keeping"
            return
        self._mode = "keeping"
        self._open(preroll)

    async def stream(self, sink: Sink, *, live: bool, preroll: bool, delay_ms: int) -> None:
        """Send what was kept, then (if `live`) live audio from `delay_ms` from now on."""
        self._sink = sink
        kept, self._kept = self._kept, []
        for pcm in kept:
            self._send(pcm)
        if not live:
            await self.stop(keep=False)
            return
        self._mode = "streaming"
        if self._task is None:
            self._open(preroll)
        if delay_ms:
            self._skip_before_ns = max(
                self._skip_before_ns, time.monotonic_ns() + delay_ms * 1_000_000
            )

    async def stop(self, keep: bool) -> None:
        """Send nothing more; drop what was kept unless `keep`."""
        self._mode = "off"
        if not keep:
            self._kept = []
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _open(self, preroll: bool) -> None:
        if self._task is not None:
            return
        # Without the pre-roll, periods captured before this moment (the ring) are skipped:
        # after a reply they hold the speaker's echo.
        self._skip_before_ns = 0 if preroll else time.monotonic_ns()
        self._task = asyncio.create_task(self._run(), name="mic-pump")

    async def _run(self) -> None:
        try:
            async with self._capture.open_stream() as stream:
                async for period in stream:
                    self._take(period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the microphone stream failed")

    def _take(self, period: Period) -> None:
        if period.captured_ns < self._skip_before_ns:
            return
        if self._mode == "keeping":
            self._kept.append(period.pcm)
        elif self._mode == "streaming":
            self._send(period.pcm)

    def _send(self, pcm: bytes) -> None:
        if self._sink is not None:
            self.sent_bytes += len(pcm)
            self._sink(pcm)
