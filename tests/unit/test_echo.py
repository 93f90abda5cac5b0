"""Echo cancellation's plumbing: the far end on the capture's clock, the pass-through
while the speaker is quiet, WebRTC's AEC3 on a synthetic room, and the hands-free rules
that change with it. Through the real daemon and rig: tests/integration/daemon."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from appliance import config
from appliance.audio.echo import (
    LEAD_MS,
    EchoCanceller,
    EchoReference,
    WebRtcProcessor,
    open_canceller,
)
from appliance.audio.fakes import FakeProcessor
from appliance.daemon import state
from appliance.voice.hands_free import HandsFree
from appliance.voice.wake import Detection, FakeWakeDetector, WakeListener
from tests.rig.sounds import espeak_16k

T0 = 10**12  # an arbitrary monotonic time, ns
MS = 1_000_000


def ramp24(n: int, start: int = 0) -> bytes:
    """24 kHz samples whose value is their index (so 16 kHz positions can be checked)."""
    return (np.arange(start, start + n) % 30000).astype("<i2").tobytes()


def test_the_reference_converts_to_16k_and_places_audio_where_it_played() -> None:
    ref = EchoReference()
    ref.played(ramp24(480), T0)  # 20 ms at 24 kHz, on the speaker from T0
    ref.played(ramp24(480, 480), T0 + 20 * MS)
    far = ref.take(T0 + 10 * MS, 320)  # 10..30 ms: 160 samples of each write
    assert far is not None and len(far) == 320
    # 16 kHz sample k is 24 kHz position 1.5 k: 10 ms in is sample 160 = position 240.
    assert far[0] == 240 and far[2] == 243 and far[1] == 241  # (241 + 242) // 2
    assert far[-1] == 718  # (718 + 719) // 2, contiguous across the two writes
    assert ref.take(T0 - 40 * MS, 320) is None  # before anything played: silence
    half = ref.take(T0 + 30 * MS, 320)  # the last 10 ms, then nothing
    assert half is not None and half[159] != 0 and not half[160:].any()


def test_a_drop_removes_what_never_played_and_a_new_run_starts_where_it_plays() -> None:
    ref = EchoReference()
    ref.played(ramp24(2400, 1), T0)  # 100 ms written ahead
    ref.cut(T0 + 30 * MS)  # stopped after 30 ms
    far = ref.take(T0 + 20 * MS, 320)
    assert far is not None and far[:160].all() and not far[160:].any()
    ref.played(ramp24(480, 5000), T0 + 500 * MS)  # the next reply, after a pause
    later = ref.take(T0 + 500 * MS, 320)
    assert later is not None and later[0] == 5000 and later[-1] == 5478


def test_the_reference_keeps_seconds_not_the_whole_day() -> None:
    ref = EchoReference()
    for i in range(50 * 60):  # a minute of continuous speech, 20 ms writes
        ref.played(ramp24(480), T0 + i * 20 * MS)
    kept = sum(len(run.samples) for run in ref._runs) // 2
    assert kept <= 16 * 4 * 1000  # at most about KEEP_MS plus a pruning step


def canceller(always: bool = False) -> tuple[EchoCanceller, FakeProcessor, EchoReference]:
    fake, ref = FakeProcessor(), EchoReference()
    return EchoCanceller(fake, ref, period_ms=20, always=always), fake, ref


def test_quiet_speaker_passes_periods_through_without_dsp() -> None:
    echo, fake, _ = canceller()
    pcm = np.full(320, 7, dtype="<i2").tobytes()
    for i in range(10):
        assert echo.clean(pcm, T0 + i * 20 * MS) == pcm
    assert fake.calls == [] and echo.status()["periods"] == 0


def test_noise_suppression_processes_every_period_even_with_a_quiet_speaker() -> None:
    echo, fake, _ = canceller(always=True)
    echo.clean(bytes(640), T0)
    assert len(fake.calls) == 1 and fake.calls[0][1] is None


def test_the_far_end_is_taken_lead_ms_early_as_one_unbroken_stream() -> None:
    echo, fake, ref = canceller()
    ref.played(ramp24(24000), T0)  # a second of reply audio
    jitter = [0, 3, 1, 6, 2, 0, 4, 5, 1, 2]  # late wake-ups of the capture thread, ms
    for i, late in enumerate(jitter):
        captured = T0 + (i + 1) * 20 * MS + 100 * MS + late * MS  # the period's end
        echo.clean(bytes(640), captured)
    fars = [far for _, far in fake.calls]
    assert all(far is not None for far in fars)
    stream = np.concatenate(fars)
    # The first period takes the far end from 100 ms + LEAD_MS on the speaker's timeline...
    first = ref.take(T0 + (100 + LEAD_MS) * MS, 320)
    assert np.array_equal(stream[:320], first)
    # ... and each next one follows it sample for sample despite the jitter.
    assert np.array_equal(stream, ref.take(T0 + (100 + LEAD_MS) * MS, 3200))


def test_a_perfectly_known_echo_is_removed_and_the_reduction_reported() -> None:
    echo, _, ref = canceller()
    reply = ramp24(24000)
    ref.played(reply, T0)
    reduction = []
    for i in range(20):
        start = T0 + i * 20 * MS
        near = ref.take(start + 0 * MS, 320)  # the echo is the far end itself ...
        captured = start + 20 * MS - LEAD_MS * MS  # ... stamped so that they line up
        out = np.frombuffer(echo.clean(near.astype("<i2").tobytes(), captured), "<i2")
        reduction.append(int(np.abs(out).max()))
    assert max(reduction) == 0
    assert echo.status()["echo_periods"] == 20


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped like speech: band-limited, in 150-400 ms syllables with gaps."""
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    noise = rng.standard_normal(n)
    smooth = np.convolve(noise, np.ones(4) / 4, mode="same")
    env = np.zeros(n)
    at = 0
    while at < n:
        length = int(16000 * rng.uniform(0.15, 0.4))
        env[at : at + length] = rng.uniform(0.3, 1.0)
        at += length + int(16000 * rng.uniform(0.05, 0.2))
    return (smooth * env * 6000).astype(np.float64)


def test_webrtc_aec3_removes_a_delayed_reverberant_echo() -> None:
    """The real DSP on a synthetic room: the far end comes back 50 ms late, at half the
    level, with reflections; after two seconds it is at least 20 dB down."""
    processor = WebRtcProcessor(echo_cancel=True, noise_suppression=False, auto_gain=False)
    far = speech_like(6.0, seed=1)
    room = np.zeros(2400)
    room[800], room[1100], room[1600], room[2300] = 0.5, 0.2, 0.1, 0.05
    echo = np.convolve(far, room)[: len(far)]
    near_in = np.clip(echo, -32768, 32767).astype(np.int16)
    far16 = np.clip(far, -32768, 32767).astype(np.int16)
    out = np.concatenate(
        [
            processor.process(near_in[i : i + 320], far16[i : i + 320])
            for i in range(0, len(far), 320)
        ]
    )
    settled = slice(2 * 16000, None)
    energy_in = float(np.sum(near_in[settled].astype(np.float64) ** 2))
    energy_out = float(np.sum(out[settled].astype(np.float64) ** 2))
    assert 10 * np.log10(energy_in / energy_out) > 20


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def run_through(processor: WebRtcProcessor, pcm: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [processor.process(pcm[i : i + 320], None) for i in range(0, len(pcm), 320)]
    )


def test_webrtc_noise_suppression_turns_a_steady_hiss_down() -> None:
    processor = WebRtcProcessor(echo_cancel=False, noise_suppression=True, auto_gain=False)
    hiss = (np.random.default_rng(0).standard_normal(3 * 16000) * 1000).astype(np.int16)
    out = run_through(processor, hiss)
    assert rms(out[16000:]) < rms(hiss[16000:]) / 2  # at least 6 dB down after a second


def test_webrtc_auto_gain_raises_a_quiet_talker() -> None:
    processor = WebRtcProcessor(echo_cancel=False, noise_suppression=False, auto_gain=True)
    voice = np.frombuffer(espeak_16k("the meeting has been moved to half past three"), "<i2")
    quiet = (np.tile(voice, 3) * 0.03).astype(np.int16)  # about -50 dBFS
    out = run_through(processor, quiet)
    last = slice(-len(voice), None)
    assert rms(out[last]) > 10 * rms(quiet[last])  # over 20 dB louder once adapted


def test_open_canceller_follows_the_config() -> None:
    assert open_canceller(config.AudioConfig()) is None
    echo = open_canceller(config.AudioConfig(echo_cancel=True))
    assert echo is not None and echo.reference is not None


def test_unavailable_dsp_is_a_config_error_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import appliance.config as config_mod

    monkeypatch.setattr(config_mod, "echo_available", lambda: "needs the pywebrtc-audio package")
    with pytest.raises(config.ConfigError) as info:
        config.parse("[audio]\necho_cancel = true\n", "/etc/appliance/config.toml")
    text = str(info.value)
    assert "/etc/appliance/config.toml" in text and "audio.echo_cancel" in text
    assert "pywebrtc-audio" in text


# --- the hands-free rules ------------------------------------------------------------


async def hands_free(duplex: str, echo_cancel: bool) -> tuple[HandsFree, list[state.Event]]:
    cfg = config.Config.model_validate(
        {"behaviour": {"duplex": duplex}, "audio": {"echo_cancel": echo_cancel}}
    )
    posted: list[state.Event] = []
    hf = HandsFree(cfg, posted.append)
    hf.wake = WakeListener(FakeWakeDetector(), hf._detected, loop=asyncio.get_running_loop())
    return hf, posted


@pytest.mark.parametrize(
    ("duplex", "echo_cancel", "heard_over_speaker"),
    [("half", False, False), ("half", True, True), ("full", False, True), ("full", True, True)],
)
async def test_the_wake_word_is_heard_over_the_speaker_only_where_it_can_be(
    duplex: str, echo_cancel: bool, heard_over_speaker: bool
) -> None:
    hf, posted = await hands_free(duplex, echo_cancel)
    assert hf.wake is not None
    hf.follow("speaking")
    hf.speaker(True)
    assert hf.wake.listening is heard_over_speaker
    hf._detected(Detection("okay nabu", 0.9, 10**12, 10**12, 10**12))
    assert bool(posted) is heard_over_speaker
    hf.follow("idle")
    hf.speaker(False)
    assert hf.wake.listening
