"""The voice gate: in an open conversation, only speech leaves the device.

A toggle conversation used to stream the room to the service until the silence
timeout: every quiet second is billed (25 tokens a second of audio) and is sound of
somebody's home that did not need to leave it. The gate runs a local voice activity
detector on each period and passes on:

- speech, starting `lookback_ms` before the period where speech was detected (the
  detector needs a while to be sure: its start lag would clip the first syllable), or
  earlier when the room was loud just before: pymicro-vad can miss a short first word
  followed by a pause ("Front ... Center": it wakes up on "Center"), so the lookback
  reaches back over loud periods separated by pauses shorter than `gap_ms`, up to
  `max_lookback_ms` ("loud": well above the room's level, which is tracked on the
  periods the detector calls quiet), and
- a hangover after the detector says the speech ended (pymicro-vad holds its own
  verdict for about half a second; `hangover_ms` is added to that),

then reports `closed`, upon which the caller sends `audioStreamEnd` (the service flushes
and can end the turn) and nothing more until speech starts again. The service's own
activity detection still takes the turns.

A detector that is still warming up (pymicro-vad needs 0.76 s of audio before its first
verdict, and then misses a word that began during that time) cannot judge: what it
hears meanwhile, and for `settle_frames` of verdicts after it, is sent (holding it back
until the first verdict would lose the words before a pause whenever that verdict falls
in the pause). The daemon warms the detector with the audio from before the
conversation (`warm`), which is not sent, so this happens only in a conversation started
within a second or two of the daemon starting.

pymicro-vad is strict about its frame: exactly 10 ms (320 bytes). The gate cuts
periods into such frames; it is used by one thread (the event loop) only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

FRAME_BYTES = 320
"""10 ms of 16 kHz mono S16_LE: the only frame size pymicro-vad accepts."""


class SpeechDetector(Protocol):
    """Speech probability of one 10 ms frame; negative while the detector warms up."""

    def probability(self, frame: bytes) -> float: ...


class MicroVadDetector:
    """pymicro-vad (imported when the first gate is made)."""

    def __init__(self) -> None:
        from pymicro_vad import MicroVad

        self._vad = MicroVad()
        # 2.x names it process_10ms; 1.0.x (the last with 32-bit ARM wheels, which
        # deploy/install.sh picks there) Process10ms: same model, same numbers.
        process: Callable[[bytes], float] | None = getattr(self._vad, "process_10ms", None)
        self._process = process or self._vad.Process10ms  # type: ignore[attr-defined]

    def probability(self, frame: bytes) -> float:
        if len(frame) != FRAME_BYTES:  # 2.x says so itself; 1.0.x does not check
            raise ValueError(f"pymicro-vad takes {FRAME_BYTES} bytes (10 ms), not {len(frame)}")
        return float(self._process(frame))


@dataclass(slots=True)
class Gated:
    """What one period turned into."""

    send: list[bytes] = field(default_factory=list)
    """Periods to send now, in order (lookback first when the gate opened)."""
    opened: bool = False
    closed: bool = False
    """The hangover after confirmed speech ran out: send `audioStreamEnd` after `send`."""


class VoiceGate:
    """Feed periods in capture order with `push`; send what it returns."""

    def __init__(
        self,
        detector: SpeechDetector,
        *,
        period_ms: int = 20,
        lookback_ms: int = 400,
        hangover_ms: int = 200,
        threshold: float = 0.5,
        keep_threshold: float = 0.3,
        start_frames: int = 3,
        settle_frames: int = 50,
        max_lookback_ms: int = 1500,
        gap_ms: int = 500,
    ) -> None:
        self._detector = detector
        self._threshold = threshold
        self._keep_threshold = keep_threshold
        self._start_frames = start_frames
        self._settle_frames = settle_frames
        self._verdicts = 0  # frames the detector has judged (its warm-up excluded)
        self._run = 0  # consecutive speech frames
        self._lookback_periods = max(1, -(-lookback_ms // period_ms))
        self._gap_periods = gap_ms // period_ms
        self._lookback: deque[tuple[bytes, bool]] = deque(
            maxlen=max(self._lookback_periods, max_lookback_ms // period_ms)
        )
        """(period, loud) before the gate opened, newest last."""
        self._floor: float | None = None  # the room's RMS, learnt from the lookback
        self._hangover_periods = -(-hangover_ms // period_ms)
        self._left = 0  # hangover periods still to send
        self._heard = False  # the detector confirmed speech since the gate opened
        self.open = False
        self.loud_opens = False
        """Open on sound well above the room as well as on the detector (set while the
        speaker plays with its echo cancelled, in full duplex): pymicro-vad is slow to
        call a short first word ("stop", "wait") speech, up to a second on "Front
        ... Center", and a barge-in must be heard within half a second. Whatever is that
        loud then is not the speaker's echo."""
        self._loud_run = 0
        self.speech_periods = 0
        """Periods sent as speech (with a detector still warming up: unjudged ones)."""

    def judge(self, pcm: bytes) -> bool | None:
        """Run the detector over one period: speech, not speech, or None while it warms
        up. While closed, speech starts after `start_frames` frames in a row at
        `threshold` (a lone click after an utterance does not reopen the gate); while
        open, any frame at `keep_threshold` keeps it open: speech starting again just as
        the hangover ends must not be cut by a stream end (the service would take its
        first syllable for a whole turn)."""
        speech = False
        threshold = self._keep_threshold if self.open else self._threshold
        # The detector judges the shape of a sound, not its level: it calls the faint
        # leftovers of a cancelled echo speech (seen at RMS 3-30). No voice starts that
        # quietly. (Once open, the detector's own hold carries it over pauses in speech,
        # which are that quiet.)
        audible = self.open or _rms(pcm) >= _SPEECH_MIN_RMS
        for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            p = self._detector.probability(pcm[start : start + FRAME_BYTES])
            self._verdicts += p >= 0
            self._run = self._run + 1 if p >= threshold and audible else 0
            if self._run >= (1 if self.open else self._start_frames):
                speech = True
        # Fresh from its warm-up the detector misses words that began during it: its
        # "quiet" means something only once it has judged `settle_frames` frames.
        return None if self._verdicts < self._settle_frames and not speech else speech

    def warm(self, pcm: bytes) -> None:
        """Let the detector hear audio that is not to be sent (before the conversation)."""
        self.judge(pcm)

    def push(self, pcm: bytes) -> Gated:
        """One period in; what to send now."""
        out = Gated()
        verdict = self.judge(pcm)
        if self.loud_opens and not self.open and not verdict:
            self._loud_run = self._loud_run + 1 if self._is_loud(pcm) else 0
            if self._loud_run >= _LOUD_OPEN_PERIODS:
                verdict, self._loud_run = True, 0
        if verdict is None or verdict:  # a detector warming up cannot say: send
            self.speech_periods += 1
            self._left = self._hangover_periods
            self._heard = self._heard or bool(verdict)
            if not self.open:
                self.open = out.opened = True
                out.send.extend(self._take_lookback())
            out.send.append(pcm)
        elif self.open:
            if self._left > 0:
                self._left -= 1
                out.send.append(pcm)
            else:
                # A stream end only after confirmed speech: opened by a warming detector
                # alone, the words may be starting right now (its start lag), and the
                # service would take their first syllable for a whole turn. Closed
                # quietly, what follows waits in the lookback and goes on seamlessly.
                self.open = False
                out.closed = self._heard
                self._heard = False
                self._remember(pcm)
        else:
            self._remember(pcm)
        return out

    def _is_loud(self, pcm: bytes) -> bool:
        floor = self._floor if self._floor is not None else 0.0
        return _rms(pcm) > max(_LOUD_OVER_FLOOR * floor, _LOUD_MIN_RMS)

    def _remember(self, pcm: bytes) -> None:
        """Keep a period the detector calls quiet for the lookback, and learn the room's
        level from it: quickly from quiet ones, slowly from loud ones (a word it missed
        must not raise the floor over the next word; a fan switched on must, in time)."""
        rms = _rms(pcm)
        floor = rms if self._floor is None else self._floor
        loud = rms > max(_LOUD_OVER_FLOOR * floor, _LOUD_MIN_RMS)
        rate = 0.002 if loud else 0.05
        self._floor = (1 - rate) * floor + rate * rms
        self._lookback.append((pcm, loud))

    def _take_lookback(self) -> list[bytes]:
        """The lookback to send as the gate opens: `lookback_ms`, or back to the first of
        the loud periods just before it (pauses under `gap_ms` between them)."""
        kept = list(self._lookback)
        self._lookback.clear()
        start = max(0, len(kept) - self._lookback_periods)
        quiet = 0
        for i in range(len(kept) - 1, -1, -1):
            if kept[i][1]:
                quiet = 0
                start = min(start, max(0, i - _BEFORE_LOUD_PERIODS))
            else:
                quiet += 1
                if quiet > self._gap_periods:
                    break
        return [pcm for pcm, _ in kept[start:]]

    def pause(self) -> None:
        """The stream stops (the reply plays): close without a stream end, forget the
        lookback (it would hold the room before the pause), keep the detector warm."""
        self.open = self._heard = False
        self._left = self._run = 0
        self._lookback.clear()


_LOUD_OVER_FLOOR = 4.0
"""A period this many times the room's RMS (12 dB) counts as loud."""
_LOUD_MIN_RMS = 200.0
"""...and at least this RMS (about -44 dBFS), so a near-silent room's hiss is not."""
_SPEECH_MIN_RMS = 60.0
"""A period quieter than this (about -55 dBFS, a microphone's own hiss) is never speech."""
_LOUD_OPEN_PERIODS = 3
"""With `loud_opens`: this many loud periods in a row (60 ms at 20 ms) open the gate."""
_BEFORE_LOUD_PERIODS = 5
"""Periods sent before the first loud one found by the look back (100 ms at 20 ms)."""


def _rms(pcm: bytes) -> float:
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return float(np.sqrt(np.mean(samples * samples))) if len(samples) else 0.0


class FakeSpeechDetector:
    """A stand-in for unit tests: a frame is speech when its first sample is non-zero;
    the first `warmup_frames` frames are not judged (like pymicro-vad's first 0.75 s)."""

    def __init__(self, warmup_frames: int = 0) -> None:
        self._warmup = warmup_frames
        self.frames = 0

    def probability(self, frame: bytes) -> float:
        assert len(frame) == FRAME_BYTES, "the real detector rejects other sizes"
        self.frames += 1
        if self.frames <= self._warmup:
            return -1.0
        return 1.0 if frame[:2] != b"\x00\x00" else 0.0
