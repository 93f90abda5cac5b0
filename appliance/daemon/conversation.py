"""The microphone -> session path of one conversation, as the state machine directs it.

`MicPump` is the one place that decides whether a captured period may leave the device.
It follows the machine's mic actions literally: `keep` buffers audio on the device while
the session connects (pre-roll first, so the first word is not clipped), `stream` sends
what was kept and then live audio, `stop` sends nothing more. Outside `stream` there is
no path from the microphone to the network at all.

With a `VoiceGate` (`[behaviour] send_audio = "speech"`, toggle mode) what `stream`
would send passes through the gate first: only speech (with a moment before and after
it) reaches the sink, and the sink is told when the stream pauses. Audio from before
the point a stream starts at is not sent but warms the gate's detector.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from appliance.audio.capture import CAPTURE_RATE, Capture, Period
from appliance.tasks import cancel_and_wait
from appliance.voice.gate import VoiceGate

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where mic audio goes (the live client)."""

    def send_audio(self, pcm: bytes) -> None: ...

    def end_audio_stream(self) -> None:
        """The stream pauses: no audio follows until speech starts again."""
        ...


class _Periods(Protocol):
    def __aiter__(self) -> _Periods: ...

    async def __anext__(self) -> Period: ...


class MicPump:
    """Moves capture periods to a sink (the live client) only while told to stream."""

    def __init__(
        self,
        capture: Capture,
        *,
        preroll_ms: int,
        gate: VoiceGate | None = None,
        on_voice: Callable[[bool], None] | None = None,
    ) -> None:
        self._capture = capture
        self._preroll_ns = preroll_ms * 1_000_000
        self.gate = gate
        self._on_voice = on_voice
        self._mode = "off"  # off | keeping | streaming
        self._kept: list[bytes] = []
        self._sink: Sink | None = None
        self._skip_before_ns = 0
        self._task: asyncio.Task[None] | None = None
        self.sent_bytes = 0
        """Mic audio handed to the sink over the pump's life (for status and tests)."""

    @staticmethod
    def seconds(pcm_bytes: int) -> float:
        """Seconds of mic audio in `pcm_bytes` (16 kHz mono S16_LE)."""
        return pcm_bytes / (2 * CAPTURE_RATE)

    async def keep(self, preroll: bool, since_ns: int | None = None) -> None:
        """Buffer audio for a session that is not ready yet: from `since_ns` (a capture
        time the ring still holds), else the pre-roll first (if `preroll`)."""
        if self._mode == "streaming":
            self._mode = "keeping"
            return
        self._mode = "keeping"
        self._open(preroll, since_ns)

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
        if self.gate is not None:
            self.gate.pause()
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    def _open(self, preroll: bool, since_ns: int | None = None) -> None:
        if self._task is not None:
            return
        # Without the pre-roll, periods captured before this moment (the ring) are skipped:
        # after a reply they hold the speaker's echo.
        if since_ns is None:
            since_ns = time.monotonic_ns() - (self._preroll_ns if preroll else 0)
        self._skip_before_ns = since_ns
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
            if self.gate is not None:
                self.gate.warm(period.pcm)
            return
        if self._mode == "keeping":
            self._kept.append(period.pcm)
        elif self._mode == "streaming":
            self._send(period.pcm)

    def _send(self, pcm: bytes) -> None:
        sink = self._sink
        if sink is None:
            return
        if self.gate is None:
            self.sent_bytes += len(pcm)
            sink.send_audio(pcm)
            return
        gated = self.gate.push(pcm)
        for chunk in gated.send:
            self.sent_bytes += len(chunk)
            sink.send_audio(chunk)
        if gated.closed:
            sink.end_audio_stream()
        if (gated.opened or gated.closed) and self._on_voice is not None:
            self._on_voice(gated.opened)
