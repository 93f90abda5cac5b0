"""Reply audio to the speaker: jitter cushion, short ALSA buffer, instant stop, clean tail.

The PCM is opened non-blocking and owned by one writer thread, which waits in `poll()`
on the PCM's descriptors plus a wake pipe. So every alsa-lib call on the PCM happens in
that thread (alsa-lib handles are not meant to be shared), yet `stop()` is served at
once: it empties the queue, kicks the pipe, and the writer calls `pcm.drop()`, which
discards what ALSA still holds (not `drain()`, which would play it).

While the writer waits for room in the ALSA buffer it sleeps for the time the device
takes to free what it needs (frames / rate, plus slack), not on the PCM's descriptors:
plugin devices signal those more often than once per period (the jack plugin on every
JACK block), and each signal would cost a Python wake-up that finds no room. (A chunk
enqueued meanwhile still wakes the writer: skipping that wake-up left chunks waiting
behind a timer that the device's block clock had not yet caught up with, and pushed
receive-to-write p99 from 0.5 ms to 12 ms on the JACK rig.)

The ALSA buffer is `periods` (3) periods of 20 ms: at most that much audio can be
committed ahead, which bounds how long sound goes on after an interruption elsewhere
in the stack. Writing starts once `jitter_ms` of audio is queued (or it has waited that
long, or the reply has ended) and restarts with the same cushion after an underrun.
`drain()` pads the tail to a period boundary plus one period of silence so the last
word is played out, waits until ALSA has played it, and only then reports idle.

A device can also hang inside alsa-lib (a `write()` that never returns: a plugin whose
sink stopped reading). The loop never waits on the writer without a bound: when
`stop()` or `drain()` sees the writer not come round once in `STUCK_S`, the device is
reported failed (the daemon shows `error`), the stuck thread is left behind (it exits
on its own if the call ever returns, touching nothing) and a new writer opens the
device afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from appliance.audio import dsp
from appliance.audio.devices import (
    AudioDeviceError,
    Backoff,
    DeviceStalledError,
    DeviceState,
    PcmSpec,
    PcmWaiter,
    PlaybackOpener,
    PlaybackPcm,
    ReportsDeviceState,
    StateCallback,
    XrunLog,
    call_in_loop,
    classify,
    open_alsa,
    release,
)
from appliance.audio.echo import EchoReference
from appliance.audio.timing import AudioStamps
from appliance.audio.volume import Volume
from appliance.config import AudioConfig

log = logging.getLogger(__name__)

PLAYBACK_RATE = 24_000
"""The Live API's output rate."""
STUCK_S = 2.0
"""A writer that does not come round its loop once in this long is stuck in alsa-lib."""


class Playback(ReportsDeviceState):
    """The speaker. `enqueue()` reply chunks, `await drain()` at the end, `await stop()`.

    `playing` is True from the first chunk until the tail has played (`drain()`) or
    `stop()`; `on_playing(bool)` reports the same transitions on the event loop, for the
    half-duplex logic and the LEDs.
    """

    direction = "playback"

    def __init__(
        self,
        config: AudioConfig,
        *,
        volume: Volume | None = None,
        on_state: StateCallback | None = None,
        on_playing: Callable[[bool], None] | None = None,
        stamps: AudioStamps | None = None,
        opener: PlaybackOpener = open_alsa,
        retry_s: tuple[float, float] = (0.5, 10.0),
        periods: int = 3,
        reference: EchoReference | None = None,
    ) -> None:
        if reference is not None:  # room for KEEPALIVE_MS of silence and a period more
            periods = max(periods, -(-KEEPALIVE_MS // config.period_ms) + 2)
        self.device = config.playback_device
        self.period_frames = PLAYBACK_RATE * config.period_ms // 1000
        self._period_ms = config.period_ms
        self._spec = PcmSpec(
            device=config.playback_device,
            direction="playback",
            rate=PLAYBACK_RATE,
            channels=1,
            period_frames=self.period_frames,
            periods=periods,
            nonblock=True,
        )
        self._cushion_bytes = PLAYBACK_RATE * config.jitter_ms // 1000 * 2
        self._cushion_ns = config.jitter_ms * 1_000_000
        self.volume = volume
        self._opener = opener
        self._retry_s = retry_s
        self._on_state = on_state
        self._on_playing = on_playing
        self.stamps = stamps or AudioStamps()
        self.underruns = XrunLog("playback underruns", self.device, log)
        self.state = DeviceState.STOPPED
        self.error: AudioDeviceError | None = None
        self.dropped_chunks = 0
        """Chunks discarded because the device was down when they arrived."""
        self.playing = False

        self._lock = threading.Lock()
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._offset = 0  # bytes of _chunks[0] already written
        self._queued = 0  # bytes queued, excluding the offset
        self._first_ns = 0  # when the first chunk arrived after idle
        self._draining = False
        self._drain_waiters: list[asyncio.Future[bool]] = []
        self._stop_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self._pcm_open = False
        self._generation = 0
        """The writer thread that owns the device; an abandoned (stuck) one has an older
        number and, should its call ever return, exits without touching anything."""
        self._beats = 0
        """Turns of the writer's loop: a writer asked to act that does not turn is stuck."""
        self.stuck = 0
        """Writers abandoned stuck in alsa-lib."""
        self._abandoned_w: dict[int, int] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stall_ms = max(2000, 20 * config.period_ms)
        """A device whose buffer stays full this long is treated as gone and reopened."""
        self.recover_ms = (periods + 8) * config.period_ms
        """A device that takes nothing this long (its whole buffer and 8 periods more) is
        dropped and written again at once, within the reply."""
        self.recoveries = 0
        self._keep_running = False
        self.reference = reference
        """Told what is played and when it reaches the speaker (the echo canceller's far
        end); None when nothing needs to know."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- loop side ----------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer thread (it opens the device and retries while it is missing)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._set_state(DeviceState.STARTING, None)
        self._start_writer()

    def _start_writer(self, *, after_stall: bool = False) -> None:
        """`after_stall`: the last writer hung in the device; open it only once it answers
        (`stalls.answers`: opening a hung server's device here would block holding the GIL)."""
        generation, wake_r = self._generation, self._wake_r
        self._thread = threading.Thread(
            target=self._run,
            args=(generation, wake_r, after_stall),
            name="audio-playback",
            daemon=True,
        )
        self._thread.start()

    async def close(self) -> None:
        """Drop anything playing and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._closing = True
        self._kick()
        await asyncio.to_thread(thread.join, STUCK_S)
        if thread.is_alive():  # stuck in alsa-lib: a daemon thread, left behind
            log.error("playback device %r: the writer is stuck; left behind", self.device)
        self._thread = None
        self._resolve_all(False)
        self.underruns.flush()
        self._set_state(DeviceState.STOPPED, None)

    def enqueue(self, pcm: bytes, received_ns: int | None = None) -> None:
        """Queue 24 kHz mono S16_LE audio; `received_ns` is when it came off the network."""
        if not pcm:
            return
        received = time.monotonic_ns() if received_ns is None else received_ns
        if len(pcm) % 2:
            pcm = pcm[:-1]
        with self._lock:
            if not self._pcm_open:
                self.dropped_chunks += 1
                return
            if not self._queued:
                self._first_ns = received
            self._chunks.append((pcm, received))
            self._queued += len(pcm)
        self._kick()
        if not self.playing:
            self._set_playing(True)

    async def stop(self) -> None:
        """Silence now: drop the queue and the ALSA buffer. Returns within one period."""
        called = time.monotonic_ns()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._clear_queue()
            drains, self._drain_waiters = self._drain_waiters, []
            self._draining = False
            if self._pcm_open and self._thread is not None:
                self._stop_waiters.append(fut)
            else:
                fut.set_result(None)
        for d in drains:
            if not d.done():
                d.set_result(False)
        self._kick()
        await self._wait_writer(fut)
        self.stamps.stop_call.add(called, time.monotonic_ns())
        self._set_playing(False)

    async def drain(self) -> bool:
        """End of reply: play out everything queued; True if it played to the end.

        Returns False if `stop()` (or a device fault) cut it short.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            if not self._pcm_open or self._thread is None:
                fut.set_result(False)
            else:
                self._draining = True
                self._drain_waiters.append(fut)
        self._kick()
        played = bool(await self._wait_writer(fut))
        with self._lock:
            idle = not self._queued and not self._draining
        if idle:
            self._set_playing(False)
        return played

    async def _wait_writer(self, fut: asyncio.Future[Any]) -> Any:
        """`fut`'s result, which the writer sets; None if the writer is stuck.

        Waiting is bounded by the writer's own progress: while it comes round its loop
        (every period while it plays) the wait goes on; one that does not turn in
        `STUCK_S` is abandoned and the device reopened (see `_abandon_writer`)."""
        while True:
            beats = self._beats
            done, _ = await asyncio.wait({fut}, timeout=STUCK_S)
            if done:
                return fut.result()
            if self._beats == beats and self._thread is not None:
                self._abandon_writer()
                return None

    def _abandon_writer(self) -> None:
        """The writer hangs in alsa-lib: say so once, leave it, open the device anew."""
        self.stuck += 1
        with self._lock:
            self._generation += 1
            self._pcm_open = False
            self._clear_queue()
            self._resolve_all(False)
        # The old thread keeps its wake pipe (it closes it if it ever returns).
        self._abandoned_w[self._generation - 1] = self._wake_w
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._set_state(
            DeviceState.FAILED,
            DeviceStalledError(
                self.device, "playback", f"a write did not return for {STUCK_S:g} s (stuck)"
            ),
        )
        self._set_playing(False)
        self._start_writer(after_stall=True)

    @property
    def keep_running(self) -> bool:
        """Keep the device playing silence between replies (while a conversation is open
        with echo cancellation): the canceller's alignment then holds from one reply to
        the next. Off: the device stops (drop) once idle."""
        return self._keep_running

    @keep_running.setter
    def keep_running(self, on: bool) -> None:
        with self._lock:
            self._keep_running = on
        self._kick()

    def _set_playing(self, playing: bool) -> None:
        if playing == self.playing:
            return
        self.playing = playing
        if self._on_playing is not None:
            self._on_playing(playing)

    def _kick(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full pipe: already awake
            os.write(self._wake_w, b"!")

    def _clear_queue(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self._queued = 0

    def _resolve_all(self, played: bool) -> None:
        """Answer every waiter (device lost or closing); called with or without the lock."""
        drains, self._drain_waiters = self._drain_waiters, []
        stops, self._stop_waiters = self._stop_waiters, []
        self._draining = False
        loop = self._loop
        if loop is None:
            return
        for d in drains:
            call_in_loop(loop, _resolve, d, played)
        for s in stops:
            call_in_loop(loop, _resolve, s, None)

    # --- the writer thread --------------------------------------------------------

    def _run(self, generation: int, wake_r: int, after_stall: bool) -> None:
        try:
            self._writer(generation, wake_r, after_stall)
        finally:
            with self._lock:
                abandoned = generation != self._generation
            if abandoned:  # its call returned at last: the pipe is its own to close
                log.info("playback device %r: the stuck writer returned and ended", self.device)
                for fd in (wake_r, self._abandoned_w.pop(generation, -1)):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _writer(self, generation: int, wake_r: int, stalled: bool) -> None:
        backoff = Backoff(*self._retry_s)
        while True:
            with self._lock:
                if self._closing or generation != self._generation:
                    return
                self._beats += 1
            try:
                pcm = self._opener(replace(self._spec, after_stall=stalled))
            except AudioDeviceError as exc:
                if self._current(generation):
                    self._set_state(exc.state, exc)
                self._sleep(backoff.next_delay(), wake_r)
                continue
            backoff.reset()
            with self._lock:
                current = generation == self._generation
                if current:
                    self._pcm_open = True
            if current:
                self._set_state(DeviceState.OK, None)
            stalled = False
            try:
                if current:
                    self._play_loop(pcm, generation, wake_r)
            except Exception as exc:  # the device vanished mid-stream
                stalled = isinstance(exc, DeviceStalledError)
                if self._current(generation):
                    error = classify(exc, self.device, "playback")
                    self._set_state(error.state, error)
            finally:
                with self._lock:
                    if generation == self._generation:
                        self._pcm_open = False
                        self._clear_queue()
                        self._resolve_all(False)
                if not stalled:  # a stalled one may block in drop/close, holding the GIL
                    with contextlib.suppress(Exception):
                        pcm.drop()  # close() would drain: never play stale audio
                release(pcm, self.device, "playback", stalled=stalled)
            with self._lock:
                if self._closing or generation != self._generation:
                    return
            self._sleep(backoff.next_delay(), wake_r)

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _sleep(self, seconds: float, wake_r: int) -> None:
        """Wait, but wake early for close()."""
        select.select([wake_r], [], [], seconds)
        with contextlib.suppress(BlockingIOError):
            while os.read(wake_r, 64):
                pass

    def _take(self, max_bytes: int) -> tuple[bytes, list[int]]:
        """Up to `max_bytes` from the queue, and the receive stamps of chunks it starts.

        Called with the lock held.
        """
        parts: list[bytes] = []
        starts: list[int] = []
        want = max_bytes
        while want and self._chunks:
            chunk, received = self._chunks[0]
            if self._offset == 0:
                starts.append(received)
            piece = chunk[self._offset : self._offset + want]
            parts.append(piece)
            want -= len(piece)
            self._offset += len(piece)
            if self._offset >= len(chunk):
                self._chunks.popleft()
                self._offset = 0
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._queued -= len(data)
        return data, starts

    def _play_loop(self, pcm: PlaybackPcm, generation: int, wake_r: int) -> None:
        period_bytes = self._spec.period_bytes
        period_frames = self.period_frames
        buffer_frames = pcm.avail()  # a freshly prepared PCM: the whole buffer is free
        if buffer_frames <= 0:
            buffer_frames = period_frames * self._spec.periods
        waiter = PcmWaiter(pcm, wake_r)
        stamps = self.stamps.receive_to_write
        delays = self.stamps.write_delay
        woke = time.monotonic_ns()  # when the writer last became able to act
        progress = woke  # last time ALSA took audio (or had nothing to take)
        stall_ns = self.stall_ms * 1_000_000
        recover_ns = self.recover_ms * 1_000_000
        last_recovery = -stall_ns  # when a stall was last met by a drop
        # After drop() the PCM is in SETUP and avail() repeats its last value until the
        # next write prepares it (seen on the jack plugin: 240 frames, less than a period,
        # so the writer waited for room that never came). An emptied PCM has it all.
        emptied = True
        reference = self.reference
        underruns = self.underruns
        started = False  # ALSA is being fed
        carry = b""  # taken from the queue but not yet accepted by ALSA
        carry_starts: list[int] = []
        tail_written = False
        written_frames = 0
        real_end = 0  # written_frames at the end of the last reply's tail
        keepalive_frames = min(buffer_frames - period_frames, KEEPALIVE_MS * PLAYBACK_RATE // 1000)
        idling = False  # running on keep-alive silence alone
        while True:
            timeout_ms: float | None = None
            wait_pcm = False
            need = period_frames  # frames of room the writer waits for
            keepalive = False
            with self._lock:
                if self._closing or generation != self._generation:
                    return
                self._beats += 1
                if self._stop_waiters:
                    stops, self._stop_waiters = self._stop_waiters, []
                    pcm.drop()
                    if reference is not None:
                        reference.cut(time.monotonic_ns())
                    emptied, idling = True, False
                    started, carry, carry_starts, tail_written = False, b"", [], False
                    written_frames = 0
                    loop = self._loop
                    assert loop is not None
                    for s in stops:
                        call_in_loop(loop, _resolve, s, None)
                    continue
                queued = self._queued + len(carry)
                draining = self._draining
                keep = self._keep_running
                if idling and not keep and not queued and not draining:
                    pcm.drop()  # the conversation is over: let the device rest
                    if reference is not None:
                        reference.cut(time.monotonic_ns())
                    emptied, started, idling, written_frames = True, False, False, 0
                if keep and not started and not queued and not draining:
                    started = idling = True  # run on silence until the reply comes
                if not started and queued:
                    waited = time.monotonic_ns() - self._first_ns
                    if queued >= self._cushion_bytes or draining or waited >= self._cushion_ns:
                        started = True
                    else:
                        timeout_ms = (self._cushion_ns - waited) / 1e6
                if not started and not queued and draining:
                    self._finish_drain(True)
                    continue
                data = b""
                starts: list[int] = []
                if started:
                    space = buffer_frames if emptied else pcm.avail()
                    if space < 0:  # xrun already flagged: the next write reports it
                        space = buffer_frames
                    if carry:
                        if space * 2 >= min(len(carry), period_bytes):
                            data, starts, carry, carry_starts = carry, carry_starts, b"", []
                        else:
                            wait_pcm = True
                            need = min(len(carry) // 2, period_frames) - space
                    elif self._queued:
                        idling = False
                        if space >= period_frames:  # whole periods, as many as fit
                            data, starts = self._take(period_bytes * (space // period_frames))
                            if self.volume is not None:
                                data = dsp.apply_gain(data, self.volume.software_gain)
                        else:
                            wait_pcm = True
                            need = period_frames - space
                    elif draining:
                        if not tail_written:
                            pad = (-written_frames) % period_frames + period_frames
                            data = dsp.silence(pad)
                            tail_written = True
                            real_end = written_frames + pad
                        elif keep:  # the device runs on: done when it played the tail
                            if written_frames - (buffer_frames - space) >= real_end:
                                tail_written, idling = False, True
                                self._finish_drain(True)
                                continue
                            keepalive = True
                        elif space >= buffer_frames:
                            pcm.drop()  # played out; drop() so the idle PCM never underruns
                            emptied = True
                            started, tail_written, written_frames = False, False, 0
                            self._finish_drain(True)
                            continue
                        else:
                            wait_pcm = True
                            need = buffer_frames - space
                    elif keep:
                        keepalive = True
                    # else: starved mid-reply; wait for data (an underrun may follow)
                if keepalive:
                    # Keep the device running on silence, KEEPALIVE_MS ahead: its clock,
                    # and so the echo canceller's alignment, stays the same from one
                    # reply to the next (each restart, an underrun too, lands on a new
                    # phase, and the canceller lets echo through while it adapts).
                    ahead_frames = buffer_frames - space
                    if ahead_frames < keepalive_frames:
                        data = dsp.silence(period_frames)
                    else:
                        wait_pcm = True
                        need = ahead_frames - keepalive_frames + 1
                if wait_pcm:
                    timeout_ms = self._period_ms
            if data:
                ahead = 0 if emptied else buffer_frames - space  # queued in ALSA before this
                n = pcm.write(data)
                if n < 0:  # underrun: pyalsaaudio re-prepared the PCM; cushion again
                    underruns.record()
                    started, carry, carry_starts = False, data, starts
                    with self._lock:
                        self._first_ns = time.monotonic_ns()
                    continue
                now = time.monotonic_ns()
                emptied = False
                if reference is not None and n > 0:
                    reference.played(data[: n * 2], now + ahead * 1_000_000_000 // PLAYBACK_RATE)
                for received in starts:
                    stamps.add(received, now)
                    delays.add(max(received, woke), now)
                written_frames += n
                progress = now
                if n * 2 < len(data):
                    carry = data[n * 2 :]
                    wait_pcm = True
                    timeout_ms = self._period_ms
                    need = min(len(carry) // 2, period_frames)
                else:
                    underruns.tick()
                    continue
            if not wait_pcm:
                progress = time.monotonic_ns()
            elif time.monotonic_ns() - progress > stall_ns:
                raise DeviceStalledError(
                    self.device, "playback", f"it took no audio for {self.stall_ms} ms"
                )
            elif time.monotonic_ns() - progress > recover_ns:
                # Stuck within a reply: drop what ALSA holds and write again from a
                # prepared PCM (the queue is kept). A device that sticks again soon
                # after is declared lost and reopened.
                if time.monotonic_ns() - last_recovery < stall_ns:
                    raise DeviceStalledError(
                        self.device,
                        "playback",
                        f"it took no audio for {self.recover_ms} ms, twice within "
                        f"{self.stall_ms} ms",
                    )
                last_recovery = time.monotonic_ns()
                self.recoveries += 1
                log.warning(
                    "playback device %r took no audio for %d ms; re-prepared it",
                    self.device,
                    self.recover_ms,
                )
                pcm.drop()
                if reference is not None:
                    reference.cut(time.monotonic_ns())
                emptied = True
                tail_written, written_frames = False, 0
                continue
            if wait_pcm and not waiter.has_fds:
                timeout_ms = self._period_ms / 4  # a device without descriptors: poll gently
            elif wait_pcm:  # sleep until the device has played enough to make the room
                timeout_ms = max(need, 1) * 1000 / PLAYBACK_RATE + _SLACK_MS
                wait_pcm = False
            waiter.wait(timeout_ms, pcm=wait_pcm)
            woke = time.monotonic_ns()

    def _finish_drain(self, played: bool) -> None:
        """Tail played out: answer drain() waiters. Called with the lock held."""
        drains, self._drain_waiters = self._drain_waiters, []
        self._draining = False
        loop = self._loop
        if loop is not None:
            for d in drains:
                call_in_loop(loop, _resolve, d, played)


KEEPALIVE_MS = 80
"""Silence kept queued while the device runs between replies: a writer held up this
long (a busy Pi, the GIL) still does not underrun. A reply starts after it."""

_SLACK_MS = 1.5
"""Wake this long after the room should be there: the device frees it on its own clock."""


def _resolve(fut: asyncio.Future[object], value: object) -> None:
    if not fut.done():
        fut.set_result(value)
