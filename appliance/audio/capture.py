"""Always-running microphone capture: ALSA thread -> pre-roll ring and bounded hand-off.

A dedicated thread waits for each period (20 ms by default) and reads it, so the asyncio
loop never waits on the sound card. The thread blocks in `poll()` on the PCM's
descriptors plus a wake pipe rather than inside a blocking `pcm.read()`: a device that
stops delivering without an error (seen with the JACK plugin when its server dies)
would otherwise hang the thread for good; with a poll timeout it is noticed, reported
and reopened, and `stop()` returns at once. Each period is stamped, reduced to
16 kHz mono S16_LE (channel pick and gain, in C via numpy when needed) and, under one
short lock, appended to the pre-roll ring and to any open stream. Opening a stream
snapshots the ring under the same lock, which is why a stream yields the pre-roll and
then the live periods with no gap and no duplicate.

Privacy: the ring is only ever read by `open_stream()`; with no stream open, audio goes
nowhere but into the ring, where it is overwritten.

Faults: an overrun (-EPIPE, already re-prepared by pyalsaaudio) is counted and logged
as a summary. A device that is missing, busy or vanishes mid-stream is reported through
`state` / `on_state` and reopened with backoff; the thread never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from appliance.audio import dsp
from appliance.audio.devices import (
    AudioDeviceError,
    Backoff,
    CaptureOpener,
    CapturePcm,
    DeviceStalledError,
    DeviceState,
    PcmSpec,
    PcmWaiter,
    XrunLog,
    classify,
    open_alsa,
)
from appliance.audio.timing import AudioStamps
from appliance.config import AudioConfig

log = logging.getLogger(__name__)

CAPTURE_RATE = 16_000
"""The Live API's input rate."""

StateCallback = Callable[[DeviceState, AudioDeviceError | None], None]


@dataclass(frozen=True, slots=True)
class Period:
    """One capture period: 16 kHz mono S16_LE and when ALSA returned it."""

    pcm: bytes
    captured_ns: int
    """time.monotonic_ns() right after pcm.read() returned."""
    seq: int
    """Consecutive per Capture; a gap in a stream means periods were dropped."""


class CaptureStream:
    """The periods of one conversation: the pre-roll, then live audio, in order.

    Bounded: if the consumer falls behind by more than `maxlen` periods the oldest are
    dropped and counted in `dropped` (never unbounded growth).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        lock: threading.Lock,
        maxlen: int,
        stamps: AudioStamps,
    ) -> None:
        self._loop = loop
        self._lock = lock
        self._queue: deque[Period] = deque()
        self._maxlen = maxlen
        self._stamps = stamps
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._live_from = 0
        self.dropped = 0

    # Called by the capture thread with Capture._lock held.
    def _push(self, period: Period) -> None:
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(period)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._loop.call_soon_threadsafe(_wake, waiter)

    def _close(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._loop.call_soon_threadsafe(_wake, waiter)

    def __aiter__(self) -> CaptureStream:
        return self

    async def __anext__(self) -> Period:
        while True:
            with self._lock:
                if self._queue:
                    period = self._queue.popleft()
                    break
                if self._closed:
                    raise StopAsyncIteration
                waiter = self._loop.create_future()
                self._waiter = waiter
            await waiter
        if period.seq >= self._live_from:
            self._stamps.capture_to_handoff.add(period.captured_ns, time.monotonic_ns())
        return period


def call_in_loop(
    loop: asyncio.AbstractEventLoop, func: Callable[..., object], *args: object
) -> None:
    """Run `func(*args)` on `loop`: directly if already there, else thread-safely."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        func(*args)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(func, *args)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Capture:
    """The microphone: `await start()`, then `async with open_stream() as s: async for p in s`.

    Built from `AudioConfig` (device, channels, channel, period_ms, preroll_ms,
    mic_gain_db). `opener` is the seam for a fake PCM in unit tests.
    """

    def __init__(
        self,
        config: AudioConfig,
        *,
        on_state: StateCallback | None = None,
        stamps: AudioStamps | None = None,
        handoff_periods: int = 50,
        opener: CaptureOpener = open_alsa,
        retry_s: tuple[float, float] = (0.5, 10.0),
        periods: int = 4,
    ) -> None:
        self.device = config.capture_device
        self.period_frames = CAPTURE_RATE * config.period_ms // 1000
        self._spec = PcmSpec(
            device=config.capture_device,
            direction="capture",
            rate=CAPTURE_RATE,
            channels=config.capture_channels,
            period_frames=self.period_frames,
            periods=periods,
            nonblock=True,
        )
        self._channel = config.capture_channel
        self._gain = dsp.db_to_gain(config.mic_gain_db)
        self._ring: deque[Period] = deque(maxlen=-(-config.preroll_ms // config.period_ms))
        self._handoff = handoff_periods
        self._opener = opener
        self._retry_s = retry_s
        self._on_state = on_state
        self.stamps = stamps or AudioStamps()
        self.overruns = XrunLog("capture overruns", self.device, log)
        self.state = DeviceState.STOPPED
        self.error: AudioDeviceError | None = None
        self.periods_read = 0
        self._lock = threading.Lock()
        self._streams: list[CaptureStream] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stall_ms = max(1000, 10 * config.period_ms)
        """A device that delivers nothing for this long is treated as gone and reopened."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the capture thread; returns at once (device faults show in `state`)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._set_state(DeviceState.STARTING, None)
        self._thread = threading.Thread(target=self._run, name="audio-capture", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the thread (within about one period) and end every open stream."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")
        await asyncio.to_thread(thread.join)
        self._thread = None
        with self._lock:
            for stream in self._streams:
                stream._close()
            self._ring.clear()
        self.overruns.flush()
        self._set_state(DeviceState.STOPPED, None)

    @asynccontextmanager
    async def open_stream(self, *, maxlen: int | None = None) -> AsyncIterator[CaptureStream]:
        """A stream of the pre-roll then live periods; closed when the block exits."""
        loop = asyncio.get_running_loop()
        bound = maxlen or (self._handoff + (self._ring.maxlen or 0) + 1)
        stream = CaptureStream(loop, self._lock, bound, self.stamps)
        with self._lock:
            stream._queue.extend(self._ring)
            stream._live_from = (self._ring[-1].seq + 1) if self._ring else self.periods_read
            self._streams.append(stream)
        try:
            yield stream
        finally:
            with self._lock:
                self._streams.remove(stream)
                stream._close()

    def preroll_ms(self) -> int:
        """How much audio the ring holds right now."""
        return len(self._ring) * self.period_frames * 1000 // CAPTURE_RATE

    # --- the capture thread -------------------------------------------------------

    def _set_state(self, state: DeviceState, error: AudioDeviceError | None) -> None:
        if state == self.state and str(error) == str(self.error):
            return  # a retry that failed the same way: said already
        self.state = state
        self.error = error
        if error is not None:
            log.error("%s", error)
        elif state == DeviceState.OK:
            log.info("capture device %r open", self.device)
        if self._on_state is not None and self._loop is not None:
            call_in_loop(self._loop, self._on_state, state, error)

    def _run(self) -> None:
        backoff = Backoff(*self._retry_s)
        while not self._stop.is_set():
            try:
                pcm = self._opener(self._spec)
            except AudioDeviceError as exc:
                self._set_state(exc.state, exc)
                self._stop.wait(backoff.next_delay())
                continue
            backoff.reset()
            self._set_state(DeviceState.OK, None)
            error = None
            try:
                self._read_loop(pcm)
            except Exception as exc:  # the device vanished mid-stream
                error = classify(exc, self.device, "capture")
            finally:
                pcm.close()
            if error is not None:  # reported once the device is released
                self._set_state(error.state, error)
                self._stop.wait(backoff.next_delay())

    def _read_loop(self, pcm: CapturePcm) -> None:
        stop = self._stop
        channels, channel, gain = self._spec.channels, self._channel, self._gain
        ring, streams, lock = self._ring, self._streams, self._lock
        overruns = self.overruns
        period_bytes = self._spec.period_bytes
        waiter = PcmWaiter(pcm, self._wake_r)
        wait_ms = self.stall_ms if waiter.has_fds else 2
        partial = b""
        quiet_since = time.monotonic_ns()
        while not stop.is_set():
            frames, data = pcm.read()
            now = time.monotonic_ns()
            if frames <= 0:
                if frames < 0:
                    overruns.record()
                    continue
                _, _, timed_out = waiter.wait(wait_ms)
                if (timed_out and waiter.has_fds) or now - quiet_since > self.stall_ms * 1e6:
                    raise DeviceStalledError(
                        self.device, "capture", f"no audio for {self.stall_ms} ms"
                    )
                continue
            quiet_since = now
            if partial or len(data) < period_bytes:  # rare: a short read; make whole periods
                partial += data
                if len(partial) < period_bytes:
                    continue
                data, partial = partial[:period_bytes], partial[period_bytes:]
            overruns.tick()
            data = dsp.apply_gain(dsp.pick_channel(data, channels, channel), gain)
            with lock:
                period = Period(data, now, self.periods_read)
                self.periods_read += 1
                ring.append(period)
                for stream in streams:
                    stream._push(period)
            if waiter.has_fds:  # wait before reading again: saves a read that says EAGAIN
                _, _, timed_out = waiter.wait(wait_ms)
                if timed_out:
                    raise DeviceStalledError(
                        self.device, "capture", f"no audio for {self.stall_ms} ms"
                    )
