"""Always-running microphone capture: ALSA thread -> pre-roll ring and bounded hand-off.

A dedicated thread reads the PCM, so the asyncio loop never waits on the sound card.
The PCM is non-blocking and the thread sleeps in `poll()` with a wake pipe rather than
inside a blocking `pcm.read()`: a device that stops delivering without an error (seen
with the JACK plugin when its server dies) would otherwise hang the thread for good;
with a timeout it is noticed, reported and reopened, and `stop()` returns at once.

Every wake-up of a Python thread costs far more CPU than the C calls it makes, so while
no stream is open the thread paces itself on the period clock instead of on the
device's descriptors: it wakes once per `idle_batch` periods and reads them all at
once (the ALSA buffer is sized to hold them with room to spare). Plugin devices signal
their descriptors more often than once per period (the jack plugin on every JACK block,
dsnoop on its own slave period); waiting on them costs a wake-up per signal, most of
which find nothing to read. The descriptors give the phase (at start, and whenever a
timed read finds nothing). While a stream is open, someone is talking to the service:
then each period is read as the device completes it, as a minimal blocking client
would, and opening a stream wakes the thread to drain what ALSA holds before the first
live period is delivered.

Each period is stamped, reduced to 16 kHz mono S16_LE (channel pick and gain, in C via
numpy when needed), cleaned of the speaker's echo when a `cleaner` is given (so the
ring, the streams and the taps all hear the cleaned signal) and, under one short lock,
appended to the pre-roll ring and to any open stream. Opening a stream snapshots the
ring under the same lock, and ALSA's backlog follows it in order, which is why a
stream yields the pre-roll and then the live periods with no gap and no duplicate.

Privacy: the ring is only ever read by `open_stream()`; with no stream open, audio goes
nowhere but into the ring, where it is overwritten.

Faults: an overrun (-EPIPE, already re-prepared by pyalsaaudio) is counted and logged
as a summary. A device that is missing, busy or vanishes mid-stream is reported through
`state` / `on_state` and reopened with backoff; the thread never dies of it. A device is
`ok` once audio comes, not when it opens: one that opens and then delivers nothing is
reported once, not as open and gone at every retry.

A read can also hang inside alsa-lib, out of reach of `poll()` (the `file` plugin's
blocking read of a FIFO whose writer stopped; a driver that never completes a period).
The thread then beats no more: a watch on the event loop reports the device stalled,
leaves that thread behind (it ends by itself if its read ever returns, delivering
nothing) and opens the device anew in a fresh one; while one left behind still hangs,
no other is left (at most two threads, however long the outage). `stop()` waits for the
thread a bounded time, so a mute never freezes the daemon on a hung read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

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
    ReportsDeviceState,
    StateCallback,
    XrunLog,
    classify,
    open_alsa,
    release,
)
from appliance.audio.timing import AudioStamps
from appliance.config import AudioConfig

log = logging.getLogger(__name__)

CAPTURE_RATE = 16_000
"""The Live API's input rate."""

STUCK_S = 2.0
"""A capture thread that does not come round (a read, a poll) in this long is stuck in
alsa-lib; `stop()` waits this long for it at most."""


@dataclass(frozen=True, slots=True)
class Period:
    """One capture period: 16 kHz mono S16_LE and when ALSA returned it."""

    pcm: bytes
    captured_ns: int
    """time.monotonic_ns() right after pcm.read() returned; for periods read together
    (a batch while idle, or a late wake-up) the last one's stamp minus a period each."""
    seq: int
    """Consecutive per Capture; a gap in a stream means periods were dropped."""


Tap = Callable[[Sequence[Period]], None]
"""Sees every period delivered, in the capture thread (see `Capture.add_tap`)."""

Cleaner = Callable[[bytes, int], bytes]
"""Turns a period (16 kHz mono, and when it was captured) into what everyone downstream
hears: the echo canceller. Runs in the capture thread, before the ring."""


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
        self._live_from: int | None = 0
        """First seq that counts as live (timed); None: after the next read batch."""
        self.dropped = 0

    # Called by the capture thread with Capture._lock held.
    def _push(self, period: Period) -> asyncio.Future[None] | None:
        """Queue a period; returns the consumer's waiter if it must be woken."""
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(period)
        waiter = self._waiter
        self._waiter = None
        return waiter

    def _wake_consumer(self, waiter: asyncio.Future[None]) -> None:
        """Wake the consumer (capture thread, lock not held)."""
        if not self._loop.is_closed():
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
        if self._live_from is not None and period.seq >= self._live_from:
            self._stamps.capture_to_handoff.add(period.captured_ns, time.monotonic_ns())
        return period


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Capture(ReportsDeviceState):
    """The microphone: `await start()`, then `async with open_stream() as s: async for p in s`.

    Built from `AudioConfig` (device, channels, channel, period_ms, preroll_ms,
    mic_gain_db). `opener` is the seam for a fake PCM in unit tests.
    """

    direction = "capture"

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
        idle_batch: int = 5,
        ring_ms: int = 0,
        cleaner: Cleaner | None = None,
    ) -> None:
        self.device = config.capture_device
        self.period_frames = CAPTURE_RATE * config.period_ms // 1000
        self._period_ns = config.period_ms * 1_000_000
        self._idle_batch = max(1, idle_batch)
        self._spec = PcmSpec(
            device=config.capture_device,
            direction="capture",
            rate=CAPTURE_RATE,
            channels=config.capture_channels,
            period_frames=self.period_frames,
            # room for an idle batch and as much again: a late wake-up does not overrun
            periods=max(periods, 2 * self._idle_batch + 2),
            nonblock=True,
        )
        self._channel = config.capture_channel
        self._gain = dsp.db_to_gain(config.mic_gain_db)
        # The pre-roll, or more when audio before a stream is wanted (`ring_ms`: the voice
        # gate's detector warms up on it; the question after a wake word is taken from it).
        ring = max(config.preroll_ms, ring_ms)
        self._ring: deque[Period] = deque(maxlen=-(-ring // config.period_ms))
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
        self._batching = False  # the thread reads idle batches (set by it, under the lock)
        self._stop = threading.Event()  # the running thread's own; a new one per thread
        self._beat = 0  # time.monotonic_ns() when the thread last came round
        self._watch: asyncio.TimerHandle | None = None
        self._left_behind: threading.Thread | None = None
        self.stuck = 0
        """Capture threads left behind hanging in alsa-lib."""
        self._died_of = ""  # what the last thread died of: said once per cause
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stall_ms = max(1000, 10 * config.period_ms)
        """A device that delivers nothing for this long is treated as gone and reopened."""
        self.stuck_s = max(STUCK_S, 2 * self.stall_ms / 1000)
        """A thread that does not come round for this long hangs in alsa-lib (its poll
        times out after `stall_ms`, so a live one always comes round sooner)."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._partial = b""  # a short read's bytes, waiting for the rest of the period
        self._wakes: list[tuple[CaptureStream, asyncio.Future[None]]] = []
        self._taps: list[Tap] = []
        self._tapped: list[Period] = []  # delivered, not yet shown to the taps
        self._cleaner = cleaner

    async def start(self) -> None:
        """Start the capture thread; returns at once (device faults show in `state`)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._set_state(DeviceState.STARTING, None)
        stuck = self._left_behind is not None and self._left_behind.is_alive()
        self._start_thread(after_stall=stuck)
        self._watch = self._loop.call_later(STUCK_S / 4, self._check_stuck)

    def _start_thread(self, *, after_stall: bool = False) -> None:
        """`after_stall`: the last thread hung in the device; open it only once it answers
        (`stalls.answers`)."""
        self._stop = stop = threading.Event()
        self._beat = time.monotonic_ns()
        self._thread = threading.Thread(
            target=self._run, args=(stop, after_stall), name="audio-capture", daemon=True
        )
        self._thread.start()

    def _check_stuck(self) -> None:
        """On the loop, every STUCK_S / 4: a thread that stopped coming round is stuck in
        alsa-lib; report the device stalled once, and reopen it in a fresh thread. A
        thread that died (of what `_run` does not expect) is reported and restarted."""
        assert self._loop is not None
        self._watch = self._loop.call_later(STUCK_S / 4, self._check_stuck)
        thread = self._thread
        if thread is None:
            return
        if not thread.is_alive():
            self._set_state(
                DeviceState.FAILED,
                AudioDeviceError(self.device, "capture", "the capture thread died; restarted"),
            )
            self._start_thread()
            return
        if time.monotonic_ns() - self._beat < self.stuck_s * 1e9:
            return
        self._set_state(
            DeviceState.MISSING,
            DeviceStalledError(
                self.device, "capture", f"a read did not return for {self.stuck_s:g} s (stuck)"
            ),
        )
        if self._left_behind is not None and self._left_behind.is_alive():
            return  # one left behind still hangs: wait for it rather than pile them up
        self._leave_behind(thread)
        self._start_thread(after_stall=True)

    def _leave_behind(self, thread: threading.Thread) -> None:
        """Let go of a thread that hangs in alsa-lib: it ends if its call ever returns."""
        self._stop.set()
        self._left_behind = thread
        self.stuck += 1

    async def stop(self) -> None:
        """Stop the thread (within about one period) and end every open stream; a thread
        stuck in alsa-lib is waited for STUCK_S at most, then left behind."""
        thread = self._thread
        if thread is None:
            return
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._stop.set()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")
        await asyncio.to_thread(thread.join, STUCK_S)
        if thread.is_alive() and self._beat > time.monotonic_ns():
            # Checking whether a stalled device answers (`stalls.answers`, bounded): not
            # stuck; it ends by itself once the check does.
            log.info("capture device %r: stops once the device check ends", self.device)
            self._left_behind = thread
        elif thread.is_alive():
            log.error("capture device %r: stuck in alsa-lib; thread left behind", self.device)
            self._leave_behind(thread)
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
            if self._batching:  # ALSA holds up to a batch of older audio: not live
                stream._live_from = None
            else:
                stream._live_from = (self._ring[-1].seq + 1) if self._ring else self.periods_read
            self._streams.append(stream)
            kick = self._batching
        if kick:  # read what ALSA holds now, not at the end of the idle batch
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"!")
        try:
            yield stream
        finally:
            with self._lock:
                self._streams.remove(stream)
                stream._close()

    def add_tap(self, tap: Tap) -> None:
        """Show every period to `tap` too, in the capture thread, after the streams'
        consumers are woken (a wake-word detector: no thread or wake-up of its own)."""
        self._taps.append(tap)

    def preroll_ms(self) -> int:
        """How much audio the ring holds right now."""
        return len(self._ring) * self.period_frames * 1000 // CAPTURE_RATE

    # --- the capture thread -------------------------------------------------------

    def _run(self, stop: threading.Event, after_stall: bool) -> None:
        try:
            self._open_and_read(stop, after_stall)
        except Exception as exc:  # the watch restarts it; say why, once per cause
            if repr(exc) != self._died_of:
                self._died_of = repr(exc)
                log.exception("capture device %r: the capture thread died", self.device)

    def _open_and_read(self, stop: threading.Event, after_stall: bool) -> None:
        backoff = Backoff(*self._retry_s)
        while not stop.is_set():
            # After a stall the open first waits for a child to see the device answer
            # (seconds, while the server hangs): that thread is not stuck in alsa-lib.
            probe_ns = 0
            if after_stall:
                from appliance.audio.stalls import PROBE_BOUND_S  # ctypes: only when needed

                probe_ns = int(PROBE_BOUND_S * 1e9)
            self._beat = time.monotonic_ns() + probe_ns
            try:
                pcm = self._opener(replace(self._spec, after_stall=after_stall))
            except Exception as exc:  # anything: the thread must outlive it and say so
                failure = classify(exc, self.device, "capture")
                if not stop.is_set():
                    self._set_state(failure.state, failure)
                self._pause(stop, backoff.next_delay())
                continue
            after_stall = False
            read_before = self.periods_read
            error = None
            try:
                self._read_loop(pcm, stop)
            except Exception as exc:  # the device vanished mid-stream
                error = classify(exc, self.device, "capture")
            finally:
                after_stall = isinstance(error, DeviceStalledError)
                release(pcm, self.device, "capture", stalled=after_stall)
            if self.periods_read > read_before:  # it worked for a while: retry soon
                backoff.reset()
            if error is not None and not stop.is_set():  # reported once released
                self._set_state(error.state, error)
                self._pause(stop, backoff.next_delay())
        if self._left_behind is threading.current_thread():
            log.info("capture device %r: the stuck thread returned and ended", self.device)

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait before a retry (not a hang: the stuck watch is told when to expect it)."""
        if not stop.is_set():  # a thread left behind must not vouch for the current one
            self._beat = time.monotonic_ns() + int(seconds * 1e9)
        stop.wait(seconds)

    def _read_loop(self, pcm: CapturePcm, stop: threading.Event) -> None:
        waiter = PcmWaiter(pcm, self._wake_r)
        try:
            if waiter.has_fds:
                self._paced_loop(pcm, waiter, stop)
            else:
                self._polled_loop(pcm, waiter, stop)
        finally:
            if not stop.is_set():
                self._wake_consumers()

    def _stalled(self) -> DeviceStalledError:
        return DeviceStalledError(self.device, "capture", f"no audio for {self.stall_ms} ms")

    def _paced_loop(self, pcm: CapturePcm, waiter: PcmWaiter, stop: threading.Event) -> None:
        """Sleep until the next period (or idle batch) is due, then read all there is."""
        period_ns = self._period_ns
        stall_ns = self.stall_ms * 1_000_000
        held = _buffer_periods(pcm, self._spec.periods)
        idle_batch = max(1, min(self._idle_batch, held // 2 - 1))
        due: int | None = None  # when the next period completes; None: ask the device
        self._partial = b""
        last_data = time.monotonic_ns()
        started = False  # a capture PCM starts on its first read, not before
        while not stop.is_set():
            self._beat = time.monotonic_ns()
            batch = 1 if self._streams else idle_batch
            if (batch > 1) != self._batching:
                with self._lock:
                    self._batching = batch > 1 and not self._streams
            device_woke = False
            if not started:
                started = True
            elif due is None:
                self._wake_consumers()
                ready, woken, timed_out = waiter.wait(self.stall_ms)
                if timed_out:
                    raise self._stalled()
                if not ready and not woken:
                    continue  # a plugin's sub-period signal
                device_woke = ready
            else:
                self._wake_consumers()
                delay_ns = due + (batch - 1) * period_ns + _SLACK_NS - time.monotonic_ns()
                if delay_ns > 0:
                    waiter.wait(delay_ns / 1e6, pcm=False)
            got, drained = self._read_available(pcm, held + 1, stop)
            if stop.is_set():
                break
            now = time.monotonic_ns()
            if got:
                last_data = now
            elif now - last_data > stall_ns:
                raise self._stalled()
            if batch == 1:
                # A stream is open: someone is talking to the service, and each period
                # is read the moment the device completes it. On the clock a read lands
                # after the slack, and later as the device's clock drifts against ours
                # (ALSA hands out whole periods, so being late shows nowhere). Measured
                # on the JACK rig: no more CPU than reading on the clock.
                due = None
            elif due is None:
                # Only the device says when a period completes; a read after any other
                # wake-up (the first, a kick) says nothing about the phase.
                due = now + period_ns if got and device_woke else None
            elif got and drained:
                due += got * period_ns
                if due < now:  # fell behind the clock (a long stall): find the phase again
                    due = None
            else:  # nothing where a period was due, or a backlog: find the phase again
                due = None

    def _read_available(
        self, pcm: CapturePcm, limit: int, stop: threading.Event
    ) -> tuple[int, bool]:
        """Read whole periods until ALSA has none (or `limit`); (periods, ALSA drained).
        Nothing is delivered by a thread left behind (`stop` set while a read hung)."""
        period_bytes = self._spec.period_bytes
        got: list[bytes] = []
        drained = False
        partial = self._partial
        for _ in range(2 * limit):
            frames, data = pcm.read()
            self._beat = time.monotonic_ns()
            if frames < 0:
                self.overruns.record()
                continue
            if frames == 0:
                drained = True
                break
            if partial or len(data) < period_bytes:  # rare: a short read; make whole periods
                partial += data
                if len(partial) < period_bytes:
                    continue
                data, partial = partial[:period_bytes], partial[period_bytes:]
            got.append(data)
            if len(got) >= limit:
                break
        if stop.is_set():
            return 0, True
        self._partial = partial
        if got:
            self._deliver(got, self._beat)
        return len(got), drained

    def _deliver(self, datas: list[bytes], now: int) -> None:
        """Convert, stamp and hand on periods read together; the last one read at `now`.
        The first audio since the device opened (or stalled) says it is `ok`."""
        if self.state != DeviceState.OK:
            self._set_state(DeviceState.OK, None)
        channels, channel, gain = self._spec.channels, self._channel, self._gain
        last = len(datas) - 1
        pcms = [dsp.apply_gain(dsp.pick_channel(d, channels, channel), gain) for d in datas]
        if self._cleaner is not None:
            clean = self._cleaner
            pcms = [clean(p, now - (last - i) * self._period_ns) for i, p in enumerate(pcms)]
        self.overruns.tick()
        wakes = self._wakes
        with self._lock:
            for i, data in enumerate(pcms):
                period = Period(data, now - (last - i) * self._period_ns, self.periods_read)
                self.periods_read += 1
                self._ring.append(period)
                if self._taps:
                    self._tapped.append(period)
                for stream in self._streams:
                    waiter = stream._push(period)
                    if waiter is not None:
                        wakes.append((stream, waiter))
            for stream in self._streams:
                if stream._live_from is None:
                    stream._live_from = self.periods_read

    def _wake_consumers(self) -> None:
        """Wake the consumers of what was delivered, then show it to the taps: right
        before the thread sleeps, so the event loop does not wait for this thread to let
        go of the GIL, and no tap's work delays a stream."""
        wakes = self._wakes
        while wakes:
            stream, waiter = wakes.pop()
            stream._wake_consumer(waiter)
        if self._tapped:
            tapped, self._tapped = self._tapped, []
            for tap in list(self._taps):  # a failing one is removed meanwhile
                try:
                    tap(tapped)
                except Exception:  # a broken detector must not take the microphone down
                    log.exception("capture tap %r failed; removed", tap)
                    self._taps.remove(tap)

    def _polled_loop(self, pcm: CapturePcm, waiter: PcmWaiter, stop: threading.Event) -> None:
        """A PCM without descriptors (a test double): read, and poll gently when empty."""
        overruns = self.overruns
        period_bytes = self._spec.period_bytes
        partial = b""
        quiet_since = time.monotonic_ns()
        while not stop.is_set():
            frames, data = pcm.read()
            self._beat = now = time.monotonic_ns()
            if stop.is_set():
                break
            if frames <= 0:
                if frames < 0:
                    overruns.record()
                    continue
                waiter.wait(2)
                if now - quiet_since > self.stall_ms * 1e6:
                    raise self._stalled()
                continue
            quiet_since = now
            if partial or len(data) < period_bytes:  # rare: a short read; make whole periods
                partial += data
                if len(partial) < period_bytes:
                    continue
                data, partial = partial[:period_bytes], partial[period_bytes:]
            self._deliver([data], now)
            self._wake_consumers()


_SLACK_NS = 1_500_000
"""How long after a period is due the thread reads it: a device's period completes on
its own clock, a little after the monotonic estimate now and then; reading too early
costs a resync (a wake-up on the descriptors)."""


def _buffer_periods(pcm: CapturePcm, asked: int) -> int:
    """The periods the device's buffer really holds (it may give fewer than asked)."""
    info = getattr(pcm, "info", None)
    if info is None:
        return asked
    try:
        got = int(info().get("periods", asked))
    except Exception:  # the hardware reported something odd: trust the request
        return asked
    return max(2, got)
