"""Test doubles of ALSA PCMs, beside the real opener (like gpiozero's mock pins).

Pass one as `opener=` to `Capture` / `Playback` to run the engine's logic without a
sound stack (unit tests, and daemon tests that need no timing). Anything about real
alsa-lib behaviour is tested on the rig devices instead (tests/integration/audio).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.audio.devices import PcmSpec

EPIPE = -32


class _FakePcm:
    """What both fakes share: no poll descriptors (the engine falls back to its own
    pacing), and a record of being closed."""

    closed = False

    def close(self) -> None:
        self.closed = True

    def polldescriptors(self) -> list[tuple[int, int]]:
        return []

    def polldescriptors_revents(self, fds: list[tuple[int, int]]) -> int:
        return 0


class FakeCapturePcm(_FakePcm):
    """Returns numbered periods (every sample = the period number), paced by `delay_s`.

    `script` entries replace a read: an int is returned as the frame count (e.g. EPIPE),
    an exception is raised.
    """

    def __init__(self, spec: PcmSpec, delay_s: float = 0.001, start: int = 0) -> None:
        self.spec = spec
        self.delay_s = delay_s
        self.n = start
        self.script: list[int | Exception] = []
        self.closed = False

    def read(self) -> tuple[int, bytes]:
        time.sleep(self.delay_s)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item, b""
        value = self.n % 30000
        self.n += 1
        frames = self.spec.period_frames
        sample = value.to_bytes(2, "little", signed=True)
        return frames, sample * (frames * self.spec.channels)


class FakePlaybackPcm(_FakePcm):
    """Accepts everything at once (like the `null` device) and remembers it.

    With `stalled = True` it plays nothing: the buffer fills and stays full (a device
    that hangs, or a reply far longer than the buffer) until `drop()`. With
    `stale_after_drop` it behaves like the alsa jack plugin after `drop()`: `avail()`
    repeats its last value until the next write prepares the PCM again.
    """

    def __init__(self, spec: PcmSpec) -> None:
        self.spec = spec
        self.written = bytearray()
        self.writes = 0
        self.drops = 0
        self.script: list[int | Exception] = []
        self.closed = False
        self.stalled = False
        self.pending = 0  # frames in the (stalled) buffer
        self.stale_after_drop = False
        self._stale: int | None = None
        self.lock = threading.Lock()

    def write(self, data: bytes) -> int:
        with self.lock:
            if self.script:
                item = self.script.pop(0)
                if isinstance(item, Exception):
                    raise item
                return item
            frames = len(data) // 2
            self._stale = None
            if self.stalled:
                frames = min(frames, self._buffer() - self.pending)
                self.pending += frames
            self.written += data[: frames * 2]
            self.writes += 1
            return frames

    def _buffer(self) -> int:
        return self.spec.period_frames * self.spec.periods

    def avail(self) -> int:
        if self._stale is not None:
            return self._stale
        return self._buffer() - self.pending

    def drop(self) -> int:
        with self.lock:
            self.drops += 1
            if self.stale_after_drop:
                self._stale = min(self.avail(), self.spec.period_frames // 2)
            self.pending = 0
        return 0


async def eventually(cond: Callable[[], object], within_s: float = 5.0) -> None:
    """Wait until `cond()` is true (it is set by an audio thread, so poll), or time out."""
    async with asyncio.timeout(within_s):
        while not cond():  # noqa: ASYNC110 - the state is changed by another thread
            await asyncio.sleep(0.002)


class FakeProcessor:
    """Stands in for WebRTC's processing (`appliance.audio.echo.AudioProcessor`): records
    what it was given and subtracts the far end sample for sample (a perfect canceller
    when the echo is exactly the reference)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any | None]] = []

    def process(self, near: Any, far: Any | None) -> Any:
        self.calls.append((near.copy(), None if far is None else far.copy()))
        if far is None:
            return near
        import numpy as np

        return np.clip(near.astype(np.int32) - far, -32768, 32767).astype(np.int16)
