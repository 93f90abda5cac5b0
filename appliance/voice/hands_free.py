"""Hands-free, as the daemon sees it: the wake word and the voice gate, built from config.

The daemon only wires this: it hands over the capture device, tells it the state the
machine is in and when the speaker plays, and receives state-machine events back
(`Wake` for a detection, `VoiceActivity` when the gate opens or closes, so the silence
timeout counts local silence). Each rule about when the wake word may fire lives here:

- only while no conversation is open (follow-ups need no wake word), or while a reply
  plays in full duplex or with echo cancellation (barge-in by voice);
- in half duplex without echo cancellation, not while the speaker plays nor for the
  tail after it: the appliance may say its own wake word (with the echo cancelled, the
  detector hears the cleaned signal, and its own voice is gone from it);
- muted: capture is closed, so the detector hears nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.audio.capture import Capture
from appliance.config import Config
from appliance.daemon import service, state
from appliance.voice.gate import MicroVadDetector, VoiceGate
from appliance.voice.wake import Detection, WakeListener, open_detector

log = logging.getLogger("appliance.voice")

RING_MS = 2000
"""Capture history kept when hands-free features are on: a wake word's question is taken
from it, and the gate's detector warms up on what comes before the audio a conversation
sends (pymicro-vad needs 0.76 s before its first verdict and the gate 0.5 s of verdicts
before it trusts a "quiet"; until then it sends everything), with the pre-roll on top."""

GATE_LOOKBACK_MS = 400
"""Audio sent from before the detected start of speech (the detector's start lag is
about 190 ms: the first syllable is in the lookback)."""

GATE_HANGOVER_MS = 200
"""Audio sent after the detector's own end of speech (it already holds about 0.5 s)."""


def wants_gate(config: Config) -> bool:
    """The gate applies to toggle conversations (hold mode has its button for turns)."""
    b = config.behaviour
    return b.send_audio == "speech" and b.mode == "toggle"


def make_gate(config: Config) -> VoiceGate | None:
    if not wants_gate(config):
        return None
    return VoiceGate(
        MicroVadDetector(),
        period_ms=config.audio.period_ms,
        lookback_ms=GATE_LOOKBACK_MS,
        hangover_ms=GATE_HANGOVER_MS,
    )


class HandsFree:
    """The wake word (if `[wake] enabled`) around one capture device."""

    def __init__(self, config: Config, post: Callable[[state.Event], None]) -> None:
        self._post = post
        self._config = config
        self.wake: WakeListener | None = None
        self.gate: VoiceGate | None = None
        """The voice gate of the conversations (made by `make_gate`, used by MicPump)."""
        self.last_detection: Detection | None = None
        self._speaker_playing = False
        self._speaker_quiet_ns = 0
        self._state: str = "idle"

    @staticmethod
    def ring_ms(config: Config) -> int:
        """How much capture history the parts below need."""
        return RING_MS if config.wake.enabled or wants_gate(config) else 0

    def attach(self, capture: Capture, loop: asyncio.AbstractEventLoop) -> None:
        """Start listening for the wake word on `capture` (when enabled)."""
        wake = self._config.wake
        if not wake.enabled:
            return
        detector = open_detector(wake.model, wake.threshold)
        self.wake = WakeListener(
            detector, self._detected, loop=loop, refractory_s=wake.refractory_s
        )
        capture.add_tap(self.wake)
        log.info("wake word %r, threshold %.2f", detector.phrase, detector.threshold)

    def close(self) -> None:
        if self.wake is not None:
            self.wake.close()

    def reload(self, config: Config) -> None:
        """A new config: duplex and tail apply at once; `[wake]` after a restart (the
        detector and the capture ring are built at start)."""
        if config.wake != self._config.wake:
            log.warning("[wake] changes take effect after `systemctl restart appliance`")
        self._config = config
        self._update()

    def follow(self, state_name: str) -> None:
        """The machine entered `state_name`: listen for the wake word only where it means
        something (no detector work at all in the other states)."""
        self._state = state_name
        self._update()

    def make_gate(self) -> VoiceGate | None:
        """The voice gate for this config (None when it does not apply), kept so that it
        can be told when the speaker plays."""
        self.gate = make_gate(self._config)
        return self.gate

    def speaker(self, playing: bool) -> None:
        """The speaker started or stopped playing (half duplex: no wake word meanwhile;
        full duplex with the echo cancelled: the gate opens on loud sound too, so a
        barge-in is heard at once)."""
        self._speaker_playing = playing
        if not playing:
            self._speaker_quiet_ns = time.monotonic_ns()
        if self.gate is not None:
            barge_in = self._config.behaviour.duplex == "full" and self._config.audio.echo_cancel
            self.gate.loud_opens = playing and barge_in
        self._update()

    def _update(self) -> None:
        if self.wake is None:
            return
        hears_over = self._hears_over_speaker()
        idle = self._state in ("idle", "offline", "error")
        # Set once: each switch on starts the detector afresh.
        self.wake.listening = (idle and (hears_over or not self._speaker_playing)) or (
            hears_over and self._state in ("speaking", "ringing")
        )

    def _hears_over_speaker(self) -> bool:
        """Whether a wake word said while the speaker plays counts."""
        return self._config.behaviour.duplex == "full" or self._config.audio.echo_cancel

    def _detected(self, detection: Detection) -> None:
        """On the event loop: a detection becomes `Wake`, unless it is the speaker's echo."""
        behaviour = self._config.behaviour
        if not self._hears_over_speaker():
            tail_ns = behaviour.half_duplex_tail_ms * 1_000_000
            if self._speaker_playing or detection.detected_ns < self._speaker_quiet_ns + tail_ns:
                log.info("wake word ignored: the speaker was playing (score %.2f)", detection.score)
                return
        self.last_detection = detection
        log.info(
            "wake word %r heard (score %.2f)",
            detection.phrase,
            detection.score,
            extra=service.fields(wake_score=f"{detection.score:.3f}"),
        )
        self._post(state.Wake(detection.audio_from_ns))

    def voice(self, speaking: bool) -> None:
        """The gate opened (speaking) or closed after speech: the silence timeout counts
        local silence."""
        self._post(state.VoiceActivity(speaking))

    def status(self) -> dict[str, Any]:
        wake = self.wake
        return {
            "enabled": wake is not None,
            "listening": bool(wake and wake.listening),
            "detections": wake.detections if wake else 0,
            "top_score": round(wake.top_score, 3) if wake else 0.0,
        }
