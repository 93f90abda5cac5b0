"""Opening ALSA PCMs, naming their faults, and pacing the retries.

Everything that knows about alsa-lib's error strings lives here, so capture and playback
only see three outcomes: an open PCM, `DeviceMissingError` or `DeviceBusyError` (both
`AudioDeviceError`, whose message names the device and says how to list devices).
pyalsaaudio is imported lazily so that unit tests with a fake PCM need no sound stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol

from appliance.audio.alsa_quiet import silence_alsa_lib

log = logging.getLogger(__name__)

Direction = Literal["capture", "playback"]

SAMPLE_BYTES = 2
"""S16_LE: every stream in the appliance is 16-bit little-endian."""


class DeviceState(StrEnum):
    """What the LEDs and `appliance status` can say about one audio device."""

    STARTING = "starting"
    OK = "ok"
    MISSING = "missing"
    BUSY = "busy"
    FAILED = "failed"
    STOPPED = "stopped"


StateCallback = Callable[["DeviceState", "AudioDeviceError | None"], None]


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


class ReportsDeviceState:
    """What Capture and Playback share: say each device state change once, as a log line
    and through `on_state` on the event loop (for the LEDs and `appliance status`)."""

    device: str
    direction: Direction
    state: DeviceState
    error: AudioDeviceError | None
    _on_state: StateCallback | None
    _loop: asyncio.AbstractEventLoop | None

    def _set_state(self, state: DeviceState, error: AudioDeviceError | None) -> None:
        if state == self.state and str(error) == str(self.error):
            return  # a retry that failed the same way: said already
        self.state = state
        self.error = error
        if error is not None:
            log.error("%s", error)
        elif state == DeviceState.OK:
            log.info("%s device %r open", self.direction, self.device)
        if self._on_state is not None and self._loop is not None:
            call_in_loop(self._loop, self._on_state, state, error)


class AudioDeviceError(Exception):
    """An ALSA device could not be opened or stopped working.

    `state` says which kind (missing, busy, failed) so the caller can show it without
    parsing the message.
    """

    state = DeviceState.FAILED

    def __init__(self, device: str, direction: Direction, detail: str) -> None:
        self.device = device
        self.direction = direction
        self.detail = detail
        super().__init__(self._message())

    def _lister(self) -> str:
        return "arecord -L" if self.direction == "capture" else "aplay -L"

    def _message(self) -> str:
        return (
            f"{self.direction} device {self.device!r} failed: {self.detail}. "
            f"List the devices with `{self._lister()}` and set audio.{self.direction}_device."
        )


class DeviceMissingError(AudioDeviceError):
    """The device name is unknown or the hardware is gone (unplugged, server stopped)."""

    state = DeviceState.MISSING

    def _message(self) -> str:
        return (
            f"{self.direction} device {self.device!r} is not available ({self.detail}). "
            f"Is it plugged in? List the devices with `{self._lister()}` and set "
            f"audio.{self.direction}_device in config.toml; retrying until it appears."
        )


class DeviceBusyError(AudioDeviceError):
    """Another process holds the device exclusively."""

    state = DeviceState.BUSY

    def _message(self) -> str:
        return (
            f"{self.direction} device {self.device!r} is busy: another process holds it "
            f"({self.detail}). Find it with `fuser -v /dev/snd/*`, or use a shared device "
            f"(`default`, dmix/dsnoop) from `{self._lister()}`; retrying until it is free."
        )


class DeviceStalledError(DeviceMissingError):
    """The device stopped delivering or taking audio without reporting an error."""


_BUSY = ("device or resource busy", "resource temporarily unavailable")
_MISSING = (
    "no such file or directory",
    "no such device",
    "unknown pcm",
    "connection refused",
    "input/output error",
    "file descriptor in bad state",
    "broken pipe",
)


def classify(exc: BaseException, device: str, direction: Direction) -> AudioDeviceError:
    """Turn an `alsaaudio.ALSAAudioError` (or OSError) into the appliance's error type."""
    if isinstance(exc, AudioDeviceError):
        return exc  # already says what happened and what to do (e.g. a stalled device)
    text = str(exc)
    low = text.lower()
    detail = text.split(" [", 1)[0] if text else type(exc).__name__
    if any(word in low for word in _BUSY):
        return DeviceBusyError(device, direction, detail)
    if any(word in low for word in _MISSING):
        return DeviceMissingError(device, direction, detail)
    return AudioDeviceError(device, direction, detail)


class CapturePcm(Protocol):
    """The part of `alsaaudio.PCM` capture uses (a fake implements it in unit tests)."""

    def read(self) -> tuple[int, bytes]: ...
    def close(self) -> None: ...
    def polldescriptors(self) -> list[tuple[int, int]]: ...
    def polldescriptors_revents(self, fds: list[tuple[int, int]]) -> int: ...


class PlaybackPcm(Protocol):
    """The part of `alsaaudio.PCM` playback uses."""

    def write(self, data: bytes) -> int: ...
    def drop(self) -> int: ...
    def close(self) -> None: ...
    def avail(self) -> int: ...
    def polldescriptors(self) -> list[tuple[int, int]]: ...
    def polldescriptors_revents(self, fds: list[tuple[int, int]]) -> int: ...


@dataclass(frozen=True, slots=True)
class PcmSpec:
    """What to open: always interleaved S16_LE."""

    device: str
    direction: Direction
    rate: int
    channels: int
    period_frames: int
    periods: int
    nonblock: bool = False
    after_stall: bool = False
    """The last handle stalled: open only once another process saw the device answer."""

    @property
    def frame_bytes(self) -> int:
        return self.channels * SAMPLE_BYTES

    @property
    def period_bytes(self) -> int:
        return self.period_frames * self.frame_bytes


CaptureOpener = Callable[[PcmSpec], CapturePcm]
PlaybackOpener = Callable[[PcmSpec], PlaybackPcm]


def open_alsa(spec: PcmSpec) -> Any:
    """Open a real ALSA PCM and check it got the rate, format and channels asked for.

    A `hw:` device that cannot do the rate would silently run at another one (a 24 kHz
    reply played at 48 kHz is a chipmunk), so a mismatch is an error that points at
    `plughw:` / `default`, which convert.
    """
    import alsaaudio

    silence_alsa_lib()  # our one line per state change says it; alsa-lib's lines would repeat
    if spec.after_stall:
        from appliance.audio import stalls

        if not stalls.answers(spec.device, spec.direction):
            raise DeviceStalledError(
                spec.device, spec.direction, "it still does not answer (a sound server that hangs?)"
            )

    def open_pcm() -> Any:
        return alsaaudio.PCM(
            type=alsaaudio.PCM_CAPTURE if spec.direction == "capture" else alsaaudio.PCM_PLAYBACK,
            mode=alsaaudio.PCM_NONBLOCK if spec.nonblock else alsaaudio.PCM_NORMAL,
            rate=spec.rate,
            channels=spec.channels,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=spec.period_frames,
            periods=spec.periods,
            device=spec.device,
        )

    try:
        try:
            pcm = open_pcm()
        except alsaaudio.ALSAAudioError as exc:
            # Only a device that our own stalled handles keep busy (a `hw:` one) gets
            # them closed (`stalls.reclaim`) and is opened again. A sound server's device
            # opens beside them and they stay parked: closing a handle of a JACK server
            # that died segfaults in libjack, even once a new server runs.
            if not (
                spec.after_stall
                and isinstance(classify(exc, spec.device, spec.direction), DeviceBusyError)
                and stalls.parked(spec.device, spec.direction)
            ):
                raise
            stalls.reclaim(spec.device, spec.direction)
            pcm = open_pcm()
    except alsaaudio.ALSAAudioError as exc:
        raise classify(exc, spec.device, spec.direction) from exc
    info: dict[str, Any] = pcm.info()
    got = (info.get("rate"), info.get("channels"), info.get("format_name"))
    if got != (spec.rate, spec.channels, "S16_LE"):
        pcm.close()
        raise AudioDeviceError(
            spec.device,
            spec.direction,
            f"it cannot do {spec.rate} Hz, {spec.channels} channel(s), S16_LE (got {got}); "
            "use a converting device such as `plughw:CARD=...,DEV=0` or `default`",
        )
    return pcm


class PcmWaiter:
    """Waits in poll() for a PCM to be ready or for a wake pipe, whichever comes first.

    The raw revents of a PCM's descriptors mean nothing by themselves for plugin PCMs
    (the jack plugin's socket stays readable until alsa-lib consumes it), so they go
    through `polldescriptors_revents`, which translates them and rearms the plugin.
    Without that the thread would spin at 100 % of a core.
    """

    def __init__(self, pcm: CapturePcm | PlaybackPcm, wake_fd: int) -> None:
        self._pcm = pcm
        self._wake_fd = wake_fd
        self._fds = pcm.polldescriptors()
        self.has_fds = bool(self._fds)
        self._both = select.poll()
        self._wake_only = select.poll()
        for poller in (self._both, self._wake_only):
            poller.register(wake_fd, select.POLLIN)
        for fd, mask in self._fds:
            self._both.register(fd, mask)
        self.drain_wake()

    def wait(self, timeout_ms: float | None, pcm: bool = True) -> tuple[bool, bool, bool]:
        """(the PCM is ready, the pipe was kicked, the wait timed out)."""
        events = (self._both if pcm and self._fds else self._wake_only).poll(timeout_ms)
        if not events:
            return False, False, True
        woken = False
        revents: dict[int, int] = {}
        for fd, ev in events:
            if fd == self._wake_fd:
                woken = True
            else:
                revents[fd] = ev
        ready = False
        if revents:
            polled = [(fd, revents.get(fd, 0)) for fd, _ in self._fds]
            mask = self._pcm.polldescriptors_revents(polled)
            ready = bool(mask & (select.POLLIN | select.POLLOUT | select.POLLERR))
        if woken:
            self.drain_wake()
        return ready, woken, False

    def drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_fd, 64):
                pass


class Backoff:
    """Exponential retry delays (0.5 s doubling to 10 s) for reopening a lost device."""

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0) -> None:
        self._first = first_s
        self._max = max_s
        self._next = first_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._max, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self._first


class XrunLog:
    """Counts underruns/overruns and logs a summary, never one line per event.

    The first event of a quiet spell is logged at once (so a fault is visible), later
    ones are folded into one line per `every_s` saying how many and since when.
    """

    def __init__(
        self,
        what: str,
        device: str,
        logger: logging.Logger,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.device = device
        self.total = 0
        self._log = logger
        self._every = every_s
        self._clock = clock
        self._pending = 0
        self._since_wall: float | None = None
        self._last_log: float | None = None

    def record(self) -> None:
        self.total += 1
        now = self._clock()
        if self._last_log is None or now - self._last_log >= self._every:
            self._pending += 1
            if self._since_wall is None:
                self._since_wall = time.time()
            self.flush(now)
        else:
            if self._pending == 0:
                self._since_wall = time.time()
            self._pending += 1

    def tick(self) -> None:
        """Log a pending summary once its window has passed (cheap; call once a period)."""
        if self._pending and self._last_log is not None:
            now = self._clock()
            if now - self._last_log >= self._every:
                self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log what is pending (also called when the stream stops)."""
        if not self._pending:
            return
        since = time.strftime("%H:%M:%S", time.localtime(self._since_wall or time.time()))
        self._log.warning(
            "%d %s on %r since %s (%d in total); recovered by re-preparing the device",
            self._pending,
            self.what,
            self.device,
            since,
            self.total,
        )
        self._pending = 0
        self._since_wall = None
        self._last_log = self._clock() if now is None else now


def release(
    pcm: CapturePcm | PlaybackPcm, device: str, direction: Direction, *, stalled: bool
) -> None:
    """Close `pcm`, unless it stalled: then park it (`stalls.park`), since closing it
    could block the whole process on a hung sound server."""
    if stalled:
        from appliance.audio import stalls

        stalls.park(pcm, device, direction)
        return
    pcm.close()
