"""A small energy detector standing in for the service's automatic activity detection.

The real service decides from the audio when the user starts and stops speaking; the
emulator does the same with a plain RMS threshold over 20 ms windows: speech starts
after `start_ms` of loud windows and ends after `silence_ms` of quiet ones (500 ms by
default, close to what the service does). Deterministic and cheap, which is what tests
need; it is not a speech detector and does not pretend to be.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from enum import Enum


class Vad(Enum):
    """What a chunk of audio changed."""

    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Thresholds of the detector; RMS is in 16-bit sample units (full scale 32767)."""

    threshold_rms: float = 500.0
    start_ms: int = 40
    silence_ms: int = 500
    window_ms: int = 20


class EnergyDetector:
    """Feed 16-bit mono PCM; get SPEECH_START / SPEECH_END events in order."""

    def __init__(self, config: VadConfig | None = None, rate: int = 16000) -> None:
        self.config = config or VadConfig()
        self.rate = rate
        self._window = max(1, rate * self.config.window_ms // 1000) * 2
        self._pending = b""
        self._loud_ms = 0
        self._quiet_ms = 0
        self.in_speech = False
        self.speech_ms = 0
        """Milliseconds from the first loud window of the current/last utterance to its last."""

    def reset(self) -> None:
        """Forget any utterance in progress (after a turn was ended by other means)."""
        self._pending = b""
        self._loud_ms = self._quiet_ms = 0
        self.in_speech = False

    def feed(self, pcm: bytes) -> list[Vad]:
        """Process `pcm` and return the transitions it caused."""
        events: list[Vad] = []
        data = self._pending + pcm
        step = self._window
        cfg = self.config
        end = len(data) - len(data) % step
        for offset in range(0, end, step):
            samples = array("h")
            samples.frombytes(data[offset : offset + step])
            rms = math.sqrt(sum(s * s for s in samples) / len(samples))
            loud = rms >= cfg.threshold_rms
            if not self.in_speech:
                self._loud_ms = self._loud_ms + cfg.window_ms if loud else 0
                if self._loud_ms >= cfg.start_ms:
                    self.in_speech = True
                    self.speech_ms = self._loud_ms
                    self._quiet_ms = 0
                    events.append(Vad.SPEECH_START)
                continue
            if loud:
                self.speech_ms += self._quiet_ms + cfg.window_ms
                self._quiet_ms = 0
            else:
                self._quiet_ms += cfg.window_ms
                if self._quiet_ms >= cfg.silence_ms:
                    self.in_speech = False
                    self._loud_ms = self._quiet_ms = 0
                    events.append(Vad.SPEECH_END)
        self._pending = data[end:]
        return events
