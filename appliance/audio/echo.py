"""Echo cancellation in the process: the speaker's own sound taken out of the microphone.

Most microphone boards people put on a Pi (ReSpeaker 2-mic, AIY, USB mics) cancel no
echo, so in full duplex a reply would be heard by the microphone, sent back, and taken
by the service for the user talking over it. WebRTC's AEC3 (through pywebrtc-audio,
which also brings WebRTC's noise suppression and automatic gain) removes it, provided it
sees the exact PCM that was played, in 10 ms frames, on the capture's clock.

The parts:
- `EchoReference`: the playback thread tells it what it wrote and when that reaches the
  speaker (its write time plus what ALSA still held ahead of it); `cut()` when a drop
  discarded the rest. It keeps that audio at 16 kHz on the monotonic clock.
- `EchoCanceller`: the capture thread hands it each period with its stamp; it takes the
  far end that was playing at that moment, slightly early (`LEAD_MS`: AEC3 finds the
  remaining delay itself, but cannot cancel an echo that arrives before its reference),
  and returns the cleaned period. The far end is taken as one continuous stream: the
  capture cursor moves by exactly one period each period and is re-synchronised only
  when the stamps drift from it by more than `RESYNC_MS` (stamp jitter would otherwise
  tear the reference apart sample by sample, which AEC3 cannot follow).
- `AudioProcessor` is the interface to the DSP; `WebRtcProcessor` is the real one,
  `FakeProcessor` (in `appliance.audio.fakes`) a stand-in for unit tests.

With only echo cancellation on, a period with no far end for `TAIL_MS` is passed through
untouched: no DSP work while the speaker is quiet (most of the day). Noise suppression
and auto gain process every period.

None of the DSP objects is thread-safe: the processor lives in the capture thread only;
the reference is the one object both threads touch, under its own lock.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from appliance.config import AudioConfig

RATE = 16_000
"""The microphone's rate, and the far end's after conversion."""

PLAYED_RATE = 24_000
"""The speaker's rate (the Live API's output)."""

LEAD_MS = 40
"""The far end is handed to AEC3 this much ahead of the capture's own estimate of when
it played: the estimates are late by up to a period, and a reference that arrives after
its echo cannot cancel it."""

RESYNC_MS = 10
"""Re-synchronise the capture cursor only when the stamps disagree with it by this much."""

TAIL_MS = 1000
"""Keep cancelling this long after the far end fell silent (the room's reverb, AEC3's
own history)."""

REFINE_WRITES = 8
"""A run that starts with sound has its start refined over this many writes."""

KEEP_MS = 3000
"""How much played audio the reference keeps behind the newest."""


def available() -> str | None:
    """None if the DSP package can be imported here, else why not (for config errors)."""
    if importlib.util.find_spec("pywebrtc_audio") is None:
        return (
            "needs the pywebrtc-audio package (pip install pywebrtc-audio), which has builds "
            "for 64-bit ARM and x86-64 only (not 32-bit Raspberry Pi OS)"
        )
    return None


def _np() -> Any:
    import numpy

    return numpy


@dataclass
class _Run:
    """Audio played without a break: sample i reached the speaker at start_ns + i/RATE."""

    start_ns: int
    samples: bytearray = field(default_factory=bytearray)  # S16_LE at RATE
    base: int = 0  # index of samples[0] (older samples were pruned)
    pending: bytes = b""  # PLAYED_RATE samples not yet converted (fewer than 3)
    writes: int = 0
    silent: bool = True  # nothing but zeros written so far

    def end_ns(self) -> int:
        return self.start_ns + (self.base + len(self.samples) // 2) * 1_000_000_000 // RATE


class EchoReference:
    """What the speaker played and when, at 16 kHz: the echo canceller's far end.

    Written by the playback thread (`played`, `cut`), read by the capture thread (`take`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[_Run] = []
        self.runs_started = 0
        self.last_played_ns = 0
        """When the newest audio reaches the speaker (0: nothing played yet)."""

    def played(self, pcm: bytes, starts_ns: int) -> None:
        """`pcm` (24 kHz mono S16_LE, after volume) was written; its first sample reaches
        the speaker at `starts_ns`."""
        with self._lock:
            run = self._runs[-1] if self._runs else None
            if run is not None and abs(starts_ns - run.end_ns()) > 20_000_000:
                run = None  # a new stretch of sound (after a drop, an underrun, a pause)
            if run is None:
                self.runs_started += 1
                run = _Run(starts_ns)
                self._runs.append(run)
            elif run.silent or run.writes < REFINE_WRITES:
                # Each estimate is early by up to one device block (ALSA reports room a
                # block at a time): the latest is the closest. Moving the run is free
                # while it has carried only silence (the speaker kept running between
                # replies); after that, only in its first writes, since later it would
                # shift audio the capture side has already taken.
                done = run.base + len(run.samples) // 2
                estimate = starts_ns - done * 1_000_000_000 // RATE
                run.start_ns = max(run.start_ns, estimate)
            run.writes += 1
            if run.silent and pcm.count(0) != len(pcm):
                run.silent = False
            data = run.pending + pcm
            usable = len(data) // 6 * 6  # whole groups of 3 samples -> 2 samples
            run.pending = data[usable:]
            if usable:
                run.samples += _to_16k(data[:usable])
            self.last_played_ns = run.end_ns()
            self._prune(run.end_ns() - KEEP_MS * 1_000_000)

    def cut(self, at_ns: int) -> None:
        """The speaker was stopped at `at_ns`: what was written for later never played."""
        with self._lock:
            if not self._runs:
                return
            run = self._runs[-1]
            keep = (at_ns - run.start_ns) * RATE // 1_000_000_000 - run.base
            if keep < len(run.samples) // 2:
                del run.samples[max(0, keep) * 2 :]
                run.pending = b""
            self.last_played_ns = min(self.last_played_ns, max(at_ns, run.start_ns))

    def take(self, start_ns: int, frames: int) -> Any:
        """The far end for `frames` samples from `start_ns` (int16 array), or None if
        nothing was playing then."""
        np = _np()
        end_ns = start_ns + frames * 1_000_000_000 // RATE
        out = None
        with self._lock:
            for run in self._runs:
                if run.start_ns >= end_ns or run.end_ns() <= start_ns:
                    continue
                first = (start_ns - run.start_ns) * RATE // 1_000_000_000  # may be < 0
                lo, hi = max(first, run.base), min(first + frames, run.base + len(run.samples) // 2)
                if hi <= lo:
                    continue
                if out is None:
                    out = np.zeros(frames, dtype=np.int16)
                piece = np.frombuffer(
                    run.samples, dtype="<i2", count=hi - lo, offset=(lo - run.base) * 2
                )
                out[lo - first : hi - first] = piece
        return out

    def _prune(self, before_ns: int) -> None:
        """Forget audio that reached the speaker before `before_ns` (lock held)."""
        while len(self._runs) > 1 and self._runs[0].end_ns() < before_ns:
            self._runs.pop(0)
        run = self._runs[0]
        drop = (before_ns - run.start_ns) * RATE // 1_000_000_000 - run.base
        if drop > RATE // 2:  # in half-second steps: del on a bytearray copies the rest
            drop = min(drop, len(run.samples) // 2)
            del run.samples[: drop * 2]
            run.base += drop


def _to_16k(pcm: bytes) -> bytes:
    """24 kHz -> 16 kHz: samples at input positions 0 and 1.5 of every 3 (a linear
    interpolation; the echo path is band-limited anyway, and AEC3 models a linear one)."""
    np = _np()
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32).reshape(-1, 3)
    out = np.empty((len(x), 2), dtype=np.int32)
    out[:, 0] = x[:, 0]
    out[:, 1] = (x[:, 1] + x[:, 2]) >> 1
    return bytes(out.astype("<i2").tobytes())


class AudioProcessor(Protocol):
    """The DSP: one period of near end (and the far end played meanwhile) in, clean out."""

    def process(self, near: Any, far: Any | None) -> Any:
        """`near`, `far`: int16 arrays of equal length; returns the cleaned near end."""
        ...


class WebRtcProcessor:
    """WebRTC's audio processing (pywebrtc-audio): AEC3, noise suppression, AGC2."""

    def __init__(self, *, echo_cancel: bool, noise_suppression: bool, auto_gain: bool) -> None:
        from pywebrtc_audio import AudioProcessor as WebRtc

        self.echo_cancel = echo_cancel
        self._dsp = WebRtc(
            sample_rate=RATE,
            echo_cancellation=echo_cancel,
            noise_suppression=noise_suppression,
            auto_gain_control=auto_gain,
            high_pass_filter=True,
        )
        self._silence: Any = None

    def process(self, near: Any, far: Any | None) -> Any:
        if not self.echo_cancel:
            return self._dsp.process(near)
        if far is None:
            if self._silence is None or len(self._silence) != len(near):
                self._silence = _np().zeros(len(near), dtype=_np().int16)
            far = self._silence
        return self._dsp.process(near, far)


@dataclass
class EchoStats:
    """What the canceller did, for `appliance status` and the benchmarks."""

    periods: int = 0
    """Periods processed (not passed through)."""
    echo_periods: int = 0
    """Of those, periods with a far end."""
    energy_in: float = 0.0
    """Sum of squares of the near end over the periods with a far end."""
    energy_out: float = 0.0
    """The same, after cleaning."""

    def reduction_db(self) -> float | None:
        """How much quieter the microphone was after cleaning while the speaker played
        (echo return loss enhancement when nobody talks over it)."""
        if self.energy_out <= 0 or self.energy_in <= 0:
            return None
        import math

        return round(10 * math.log10(self.energy_in / self.energy_out), 1)


class EchoCanceller:
    """Cleans capture periods, in the capture thread: `clean(pcm, captured_ns)`."""

    def __init__(
        self,
        processor: AudioProcessor,
        reference: EchoReference,
        *,
        period_ms: int,
        always: bool,
        lead_ms: int = LEAD_MS,
    ) -> None:
        self._processor = processor
        self.reference = reference
        self._frames = RATE * period_ms // 1000
        self._period_ns = period_ms * 1_000_000
        self._always = always  # noise suppression / auto gain: every period
        self._lead_ns = lead_ms * 1_000_000
        self._cursor: int | None = None  # the far end's time for the next period
        self.resyncs = 0
        """Times the stamps drifted from the cursor by more than RESYNC_MS."""
        self.stats = EchoStats()

    def clean(self, pcm: bytes, captured_ns: int) -> bytes:
        """The period ending at `captured_ns` (16 kHz mono S16_LE), cleaned."""
        stamp = captured_ns - self._period_ns + self._lead_ns
        cursor = self._cursor
        if cursor is None or abs(stamp - cursor) > RESYNC_MS * 1_000_000:
            self.resyncs += cursor is not None
            cursor = stamp
        self._cursor = cursor + self._period_ns
        recent = cursor - self.reference.last_played_ns < TAIL_MS * 1_000_000
        if not (self._always or recent):
            return pcm
        far = self.reference.take(cursor, self._frames) if recent else None
        np = _np()
        near = np.frombuffer(pcm, dtype="<i2")
        out = self._processor.process(near, far)
        stats = self.stats
        stats.periods += 1
        if far is not None and far.any():
            stats.echo_periods += 1
            stats.energy_in += float(np.dot(near.astype(np.float64), near))
            stats.energy_out += float(np.dot(out.astype(np.float64), out))
        return bytes(out.astype("<i2", copy=False).tobytes())

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "periods": s.periods,
            "far_end_runs": self.reference.runs_started,
            "resyncs": self.resyncs,
            "echo_periods": s.echo_periods,
            "reduction_db": s.reduction_db(),
        }


def open_canceller(audio: AudioConfig) -> EchoCanceller | None:
    """The canceller `[audio]` asks for (echo_cancel, noise_suppression, auto_gain), or
    None when all are off (then nothing of this module's DSP is loaded)."""
    if not (audio.echo_cancel or audio.noise_suppression or audio.auto_gain):
        return None
    processor = WebRtcProcessor(
        echo_cancel=audio.echo_cancel,
        noise_suppression=audio.noise_suppression,
        auto_gain=audio.auto_gain,
    )
    return EchoCanceller(
        processor,
        EchoReference(),
        period_ms=audio.period_ms,
        always=audio.noise_suppression or audio.auto_gain,
    )
