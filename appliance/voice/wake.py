"""The wake word: a detector on the capture stream, one more way to start a conversation.

It runs on the device, in the capture thread, on the periods capture already reads
(`Capture.add_tap`): no extra thread, no extra wake-up, and while the appliance is idle
the periods arrive in the capture thread's idle batches. Nothing leaves the device
because of it: a detection is an event for the state machine, like a button press.

The detector is pymicro-wakeword (microWakeWord TFLite models shipped in its wheel; its
TFLite call goes through ctypes and releases the GIL). It is imported only when the
wake word is enabled: numpy and the TFLite library cost start-up time and memory on a
Pi Zero 2 W.

"okay nabu, what's the time?" said in one breath must reach the session whole, so a
`Detection` says where the question may start: the detector fires some time after the
wake word ends (80-260 ms on our espeak-ng phrase set: the model averages its last five
30 ms scores), and the question can start before it fires. `audio_from_ns` is the
detection minus `QUESTION_LOOKBACK_MS`; the audio from there on is kept from the
capture ring while the session connects. At worst the last syllable of the wake word
goes with it, never the first of the question.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from appliance.audio.capture import Period

log = logging.getLogger(__name__)

SHIPPED_MODELS: tuple[str, ...] = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")
"""The models in the pymicro-wakeword wheel (a test checks this against the package)."""

QUESTION_LOOKBACK_MS = 300
"""How far before a detection the question may start (the detector's lag, with room)."""


class WakeDetector(Protocol):
    """Scores 16 kHz mono S16_LE audio for one wake phrase. Used by one thread only."""

    phrase: str
    threshold: float
    """A score above this is a detection."""

    def score(self, pcm: bytes) -> float:
        """The highest score reached while taking in `pcm` (0.0 while warming up)."""
        ...

    def reset(self) -> None:
        """Forget all audio heard so far (its features and the model's state)."""
        ...

    def close(self) -> None: ...


class MicroWakeWordDetector:
    """pymicro-wakeword: `model` is a shipped name or the path of a model's .json."""

    def __init__(self, model: str, threshold: float | None = None) -> None:
        from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

        if model in SHIPPED_MODELS:
            self._model = MicroWakeWord.from_builtin(Model(model))
        else:
            self._model = MicroWakeWord.from_config(Path(model))
        self._features = MicroWakeWordFeatures()
        self.phrase: str = self._model.wake_word
        self.threshold: float = (
            threshold if threshold is not None else float(self._model.probability_cutoff)
        )

    def score(self, pcm: bytes) -> float:
        top = 0.0
        for features in self._features.process_streaming(pcm):
            probability = self._model.process_streaming_prob(features)
            if probability is not None and probability > top:
                top = probability
        return top

    def reset(self) -> None:
        self._features.reset()
        self._model.reset()  # reloads the model: its layers keep state between calls

    def close(self) -> None:
        self._model.close()


def open_detector(model: str, threshold: float | None) -> WakeDetector:
    """The real detector for `[wake] model` and `threshold`."""
    return MicroWakeWordDetector(model, threshold)


@dataclass(frozen=True, slots=True)
class Detection:
    """The wake word was heard."""

    phrase: str
    score: float
    detected_ns: int
    """Capture stamp (time.monotonic_ns) of the period that completed the wake word."""
    audio_from_ns: int
    """Audio captured from here on belongs to the question (see QUESTION_LOOKBACK_MS)."""
    reported_ns: int
    """When the capture thread handed the detection to the event loop."""


class WakeListener:
    """A capture tap: feeds the detector, and reports detections on the event loop.

    `listening` is switched by the daemon: off while a conversation is open (follow-ups
    need no wake word) the detector costs nothing. When it is switched back on, the
    detector starts afresh: its state still holds the wake word that began the
    conversation, and fed the next audio it would fire on that, seconds later, on
    silence. After a detection, further ones are ignored for `refractory_s` (the score
    stays high for a few windows).
    """

    def __init__(
        self,
        detector: WakeDetector,
        on_detect: Callable[[Detection], None],
        *,
        loop: asyncio.AbstractEventLoop,
        refractory_s: float = 2.0,
    ) -> None:
        self.detector = detector
        self._on_detect = on_detect
        self._loop = loop
        self._refractory_ns = int(refractory_s * 1e9)
        self._quiet_until_ns = 0
        self._listening = True
        self._fresh = False  # reset the detector before it next hears audio
        self.detections = 0
        self.top_score = 0.0
        """The highest score seen since the last detection (for `status` and tuning)."""

    @property
    def listening(self) -> bool:
        return self._listening

    @listening.setter
    def listening(self, on: bool) -> None:
        if on and not self._listening:
            self._fresh = True  # done in the capture thread, which owns the detector
        self._listening = on

    def __call__(self, periods: Sequence[Period]) -> None:
        """Take periods from the capture thread (never the event loop's)."""
        if not self._listening:
            return
        if self._fresh:
            self._fresh = False
            self.detector.reset()
        for period in periods:
            score = self.detector.score(period.pcm)
            if score > self.top_score:
                self.top_score = score
            if score <= self.detector.threshold or period.captured_ns < self._quiet_until_ns:
                continue
            self._quiet_until_ns = period.captured_ns + self._refractory_ns
            self.detections += 1
            self.top_score = 0.0
            detection = Detection(
                phrase=self.detector.phrase,
                score=score,
                detected_ns=period.captured_ns,
                audio_from_ns=period.captured_ns - QUESTION_LOOKBACK_MS * 1_000_000,
                reported_ns=time.monotonic_ns(),
            )
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._on_detect, detection)

    def close(self) -> None:
        self._listening = False
        self.detector.close()


class FakeWakeDetector:
    """A stand-in for unit tests: scores 1.0 on a period whose samples all equal `marker`."""

    def __init__(self, marker: int = 12345, phrase: str = "test phrase") -> None:
        self.phrase = phrase
        self.threshold = 0.5
        self._marker = marker.to_bytes(2, "little", signed=True)
        self.fed_bytes = 0
        self.resets = 0
        self.closed = False

    def score(self, pcm: bytes) -> float:
        self.fed_bytes += len(pcm)
        return 1.0 if pcm and pcm == self._marker * (len(pcm) // 2) else 0.0

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True
