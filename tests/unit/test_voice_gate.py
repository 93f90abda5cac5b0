"""The voice gate: with a fake detector (exact rules), then with pymicro-vad on a real
voice (alsa-utils' Front_Center.wav) and on noise."""

from __future__ import annotations

import pytest

from appliance.voice.gate import FRAME_BYTES, FakeSpeechDetector, MicroVadDetector, VoiceGate
from tests.rig.sounds import ALSA_SOUNDS, pcm_16k

PERIOD = 640  # 20 ms


def loud(n: int = 1) -> list[bytes]:
    return [(1000).to_bytes(2, "little") * (PERIOD // 2) for _ in range(n)]


def quiet(n: int = 1) -> list[bytes]:
    return [bytes(PERIOD) for _ in range(n)]


def run(gate: VoiceGate, periods: list[bytes]) -> tuple[list[bytes], list[str]]:
    sent: list[bytes] = []
    edges: list[str] = []
    for pcm in periods:
        out = gate.push(pcm)
        sent.extend(out.send)
        edges += ["open"] * out.opened + ["close"] * out.closed
    return sent, edges


def test_sends_speech_with_lookback_and_hangover_then_closes() -> None:
    gate = VoiceGate(
        FakeSpeechDetector(), lookback_ms=100, hangover_ms=60, start_frames=2, settle_frames=0
    )
    # quiet to the fake (first sample zero), yet each period distinct
    room = [bytes(2) + bytes([i]) + bytes(PERIOD - 3) for i in range(10)]
    speech = loud(5)
    after = quiet(10)
    sent, edges = run(gate, room + speech + after)
    assert edges == ["open", "close"]
    # 100 ms lookback = the last 5 room periods, the speech, 60 ms = 3 periods of hangover
    assert sent == room[-5:] + speech + after[:3]
    assert not gate.open


def test_reopens_for_the_next_utterance_and_pause_forgets_the_lookback() -> None:
    gate = VoiceGate(
        FakeSpeechDetector(), lookback_ms=40, hangover_ms=0, start_frames=2, settle_frames=0
    )
    sent, edges = run(gate, quiet(3) + loud(2) + quiet(3) + loud(1) + quiet(1))
    assert edges == ["open", "close", "open", "close"]
    assert len(sent) == 2 + 2 + 2 + 1  # lookback + speech, twice
    gate.pause()
    sent, edges = run(gate, loud(1))
    assert sent == loud(1) and edges == ["open"]  # nothing from before the pause


def test_a_detector_still_warming_up_counts_as_speech() -> None:
    gate = VoiceGate(
        FakeSpeechDetector(warmup_frames=4),
        lookback_ms=0,
        hangover_ms=0,
        start_frames=2,
        settle_frames=4,
    )
    sent, edges = run(gate, quiet(4))
    # Fails open through the warm-up and the first 4 verdicts (never loses words), and
    # closes without a stream end: nothing it sent was confirmed speech, and words may
    # be starting as it closes.
    assert len(sent) == 3 and edges == ["open"] and not gate.open
    sent, edges = run(gate, loud(2) + quiet(1))
    assert sent == quiet(1) + loud(2) and edges == ["open", "close"]  # 1 period of lookback


def test_the_lookback_reaches_back_to_a_loud_word_the_detector_missed() -> None:
    # "Front ... Center": the detector wakes up on the second word only. The loud first
    # word, the pause after it and 100 ms before it are sent too; the room before is not.
    gate = VoiceGate(
        FakeSpeechDetector(), lookback_ms=100, hangover_ms=0, start_frames=2, settle_frames=0
    )
    missed = (3000).to_bytes(2, "little") * 320
    missed = bytes(2) + missed[2:320] + bytes(2) + missed[322:]  # quiet to the fake
    room = [bytes(2) + bytes([i]) + bytes(PERIOD - 3) for i in range(20)]
    pause = [bytes(2) + bytes([i, 1]) + bytes(PERIOD - 4) for i in range(10)]
    sent, edges = run(gate, [*room, *[missed] * 5, *pause, *loud(2)])
    assert edges == ["open"]
    assert sent == [*room[-5:], *[missed] * 5, *pause, *loud(2)]


def test_a_lone_speech_frame_does_not_open_the_gate() -> None:
    gate = VoiceGate(
        FakeSpeechDetector(), lookback_ms=0, hangover_ms=0, start_frames=3, settle_frames=0
    )
    click = loud(1)[0][:320] + bytes(320)  # one 10 ms frame of "speech"
    sent, edges = run(gate, [click, *quiet(2), click])
    assert sent == [] and edges == []


def test_warm_audio_is_judged_but_never_sent() -> None:
    detector = FakeSpeechDetector(warmup_frames=4)
    gate = VoiceGate(detector, lookback_ms=100, hangover_ms=0, settle_frames=0)
    for pcm in loud(2):
        gate.warm(pcm)
    assert detector.frames == 4
    sent, edges = run(gate, quiet(3))
    assert sent == [] and edges == []
    sent, edges = run(gate, loud(2))
    assert sent == quiet(3) + loud(2) and edges == ["open"]  # lookback, never the warm audio


def test_frames_are_exactly_10_ms() -> None:
    detector = FakeSpeechDetector()
    gate = VoiceGate(detector, period_ms=30)
    gate.push(bytes(960))  # 30 ms: three frames
    assert detector.frames == 3 and FRAME_BYTES == 320


# --- pymicro-vad itself --------------------------------------------------------------------


def periods_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + PERIOD] for i in range(0, len(pcm) - PERIOD + 1, PERIOD)]


def test_pymicro_vad_gate_passes_a_real_voice_and_not_noise() -> None:
    voice = pcm_16k(ALSA_SOUNDS / "Front_Center.wav")
    noise = pcm_16k(ALSA_SOUNDS / "Noise.wav")
    gate = VoiceGate(MicroVadDetector(), lookback_ms=400, hangover_ms=200)
    for pcm in periods_of(bytes(48000)):  # 1.5 s of room to warm up on, as the ring gives
        gate.warm(pcm)
    sent, edges = run(gate, periods_of(bytes(16000) + voice + bytes(64000)))
    assert edges == ["open", "close"]
    voiced = b"".join(sent)
    # Every loud 20 ms of the voice is in what was sent.
    loud_periods = [p for p in periods_of(voice) if max(map(abs, memoryview(p).cast("h"))) > 2000]
    assert loud_periods and all(p in voiced for p in loud_periods)
    # ...and not much more than the voice: lookback, the detector's hold and the hangover.
    assert len(voiced) / 32000 < len(voice) / 32000 + 1.5

    sent, edges = run(gate, periods_of(noise * 3))
    assert sent == [] and edges == []


def test_pymicro_vad_rejects_short_frames() -> None:
    # Why the gate cuts 10 ms frames itself.
    with pytest.raises(ValueError, match="320 bytes"):
        MicroVadDetector().probability(bytes(160))


def test_faint_sound_shaped_like_speech_never_opens_the_gate() -> None:
    # What an echo canceller leaves of the speaker's voice: speech to the detector, which
    # judges shape not level, at RMS 5. A voice is never that quiet.
    gate = VoiceGate(FakeSpeechDetector(), start_frames=2, settle_frames=0)
    faint = [(5).to_bytes(2, "little") * (PERIOD // 2) for _ in range(50)]
    sent, edges = run(gate, faint)
    assert sent == [] and edges == []
    sent, edges = run(gate, loud(5))  # a voice at RMS 1000 does
    assert edges == ["open"] and len(sent) >= 5


def test_while_the_speaker_plays_loud_sound_opens_the_gate_before_the_detector_does() -> None:
    # Loud to the ear, not speech to the (fake) detector: its first sample is zero.
    missed = bytes(2) + (3000).to_bytes(2, "little") * (PERIOD // 2 - 1)
    gate = VoiceGate(FakeSpeechDetector(), start_frames=2, settle_frames=0)
    run(gate, quiet(20))
    sent, edges = run(gate, [missed] * 5)
    assert edges == [] and sent == []  # the detector alone does not open it
    gate.loud_opens = True
    sent, edges = run(gate, [missed] * 3)
    assert edges == ["open"] and missed in sent  # 60 ms of loud sound did
