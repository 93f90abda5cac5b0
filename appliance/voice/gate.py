"""The voice gate: in an open conversation, only speech leaves the device.

A toggle conversation used to stream the room to the service until the silence
timeout: every quiet second is billed (25 tokens a second of audio) and is sound of
somebody's home that did not need to leave it. The gate runs a local voice activity
detector on each period and passes on:

- speech, starting `lookback_ms` before the period where speech was detected (the
  detector needs a while to be sure: its start lag would clip the first syllable), and
- a hangover after the detector says the speech ended (pymicro-vad holds its own
  verdict for about half a second; `hangover_ms` is added to that),

then reports `closed`, upon which the caller sends `audioStreamEnd` (the service flushes
and can end the turn) and nothing more until speech starts again. The service's own
activity detection still takes the turns.

A detector that is still warming up (pymicro-vad needs about 0.75 s of audio before its
first verdict) counts as speech: the gate fails open rather than lose words. It is
warmed with audio from before the conversation (`warm`), which is not sent.

pymicro-vad is strict about its frame: exactly 10 ms (320 bytes). The gate cuts
periods into such frames; it is used by one thread (the event loop) only.
"""

from __future__ import annotations

from collections import deque
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

    def probability(self, frame: bytes) -> float:
        return float(self._vad.process_10ms(frame))


@dataclass(slots=True)
class Gated:
    """What one period turned into."""

    send: list[bytes] = field(default_factory=list)
    """Periods to send now, in order (lookback first when the gate opened)."""
    opened: bool = False
    closed: bool = False
    """The hangover ran out: send `audioStreamEnd` after `send`."""


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
        start_frames: int = 3,
    ) -> None:
        self._detector = detector
        self._threshold = threshold
        self._start_frames = start_frames
        self._run = 0  # consecutive speech frames
        self._lookback: deque[bytes] = deque(maxlen=max(1, -(-lookback_ms // period_ms)))
        self._hangover_periods = -(-hangover_ms // period_ms)
        self._left = 0  # hangover periods still to send
        self.open = False
        self.speech_periods = 0
        """Periods the detector called speech (or could not yet judge)."""

    def is_speech(self, pcm: bytes) -> bool:
        """Run the detector over one period. While closed, speech starts after
        `start_frames` speech frames in a row (a lone click after an utterance does not
        reopen the gate); while open, any speech frame keeps it open."""
        speech = False
        for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
            p = self._detector.probability(pcm[start : start + FRAME_BYTES])
            self._run = self._run + 1 if p < 0 or p >= self._threshold else 0
            if self._run >= (1 if self.open else self._start_frames):
                speech = True
        return speech

    def warm(self, pcm: bytes) -> None:
        """Let the detector hear audio that is not to be sent (before the conversation)."""
        self.is_speech(pcm)

    def push(self, pcm: bytes) -> Gated:
        """One period in; what to send now."""
        out = Gated()
        if self.is_speech(pcm):
            self.speech_periods += 1
            self._left = self._hangover_periods
            if not self.open:
                self.open = out.opened = True
                out.send.extend(self._lookback)
                self._lookback.clear()
            out.send.append(pcm)
        elif self.open:
            if self._left > 0:
                self._left -= 1
                out.send.append(pcm)
            else:
                self.open = False
                out.closed = True
                self._lookback.append(pcm)
        else:
            self._lookback.append(pcm)
        return out

    def pause(self) -> None:
        """The stream stops (the reply plays): close without a stream end, forget the
        lookback (it would hold the room before the pause), keep the detector warm."""
        self.open = False
        self._left = self._run = 0
        self._lookback.clear()


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
