"""Capture and playback through real alsa-lib and pyalsaaudio on `file` plugin devices.

Unpaced (they run as fast as the engine reads or writes): these check bytes, rate and
format, not timing.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.capture import Capture
from appliance.audio.devices import DeviceState
from appliance.audio.earcons import Earcons
from appliance.audio.fakes import eventually
from appliance.audio.playback import Playback
from appliance.audio.volume import Volume
from appliance.config import AudioConfig
from tests.rig.alsa import AlsaRig

pytestmark = pytest.mark.timeout(60)


def noise(frames: int, channels: int = 1, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-12000, 12000, size=(frames, channels), dtype=np.int16)


async def read_periods(capture: Capture, count: int) -> bytes:
    out = []
    async with capture.open_stream(maxlen=100_000) as stream:
        async for period in stream:
            out.append(period.pcm)
            if len(out) == count:
                break
    return b"".join(out)


async def test_capture_returns_the_file_bytes_exactly(
    alsa_rig: AlsaRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = noise(16000)  # 1 s
    infile = alsa_rig.directory / "in.raw"
    alsa_rig.directory.mkdir(parents=True)
    infile.write_bytes(samples.tobytes())
    alsa_rig.file_capture("testmic", infile)
    alsa_rig.apply(monkeypatch)
    capture = Capture(AudioConfig(capture_device="testmic", preroll_ms=0))
    # Open the stream before the first read so nothing lands only in the ring.
    async with capture.open_stream(maxlen=100_000) as stream:
        await capture.start()
        got = []
        async for period in stream:
            got.append(period)
            if len(got) == 50:
                break
    await capture.stop()
    assert [p.seq for p in got] == list(range(50))
    assert b"".join(p.pcm for p in got) == samples.tobytes()


async def test_capture_picks_a_channel_of_a_stereo_file_and_applies_gain(
    alsa_rig: AlsaRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = noise(16000, channels=2, seed=2)
    samples[100, 1] = 20000  # clips at +12 dB
    infile = alsa_rig.directory / "stereo.raw"
    alsa_rig.directory.mkdir(parents=True)
    infile.write_bytes(samples.tobytes())
    alsa_rig.file_capture("hat", infile)
    alsa_rig.apply(monkeypatch)
    config = AudioConfig(
        capture_device="hat", capture_channels=2, capture_channel=1, mic_gain_db=12, preroll_ms=0
    )
    capture = Capture(config)
    async with capture.open_stream(maxlen=100_000) as stream:
        await capture.start()
        got = []
        async for period in stream:
            got.append(period.pcm)
            if len(got) == 50:
                break
    await capture.stop()
    mono = np.frombuffer(b"".join(got), dtype="<i2")
    gain = 10 ** (12 / 20)
    expected = np.clip(np.rint(samples[:, 1].astype(np.float32) * np.float32(gain)), -32768, 32767)
    assert mono[100] == 32767
    assert np.array_equal(mono, expected.astype(np.int16))


async def test_playback_writes_24k_mono_s16_and_the_bytes_played(
    alsa_rig: AlsaRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = alsa_rig.directory / "out.wav"
    alsa_rig.file_playback("testspk", out, wav=True)
    alsa_rig.apply(monkeypatch)
    config = AudioConfig(playback_device="testspk", volume=100)
    playback = Playback(config, volume=Volume(config))
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    reply = noise(24000 + 123).tobytes()  # not a whole number of periods
    for i in range(0, len(reply), 3840):
        playback.enqueue(reply[i : i + 3840])
    assert await playback.drain() is True
    await playback.close()
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        played = w.readframes(w.getnframes())
    assert played[: len(reply)] == reply
    assert len(played) - len(reply) <= 2 * 2 * 480  # only the silent tail pad follows
    assert not any(played[len(reply) :])


async def test_software_volume_and_earcons_through_the_real_device(
    alsa_rig: AlsaRig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = alsa_rig.directory / "out.raw"
    alsa_rig.file_playback("testspk", out)
    alsa_rig.apply(monkeypatch)
    config = AudioConfig(playback_device="testspk", volume=50)
    volume = Volume(config, tmp_path / "state")
    playback = Playback(config, volume=volume)
    await playback.start()
    earcons = Earcons(("wake",))
    assert await earcons.play(playback, "wake") is True
    assert await earcons.play(playback, "done") is False  # disabled: nothing played
    await playback.close()
    wake = np.frombuffer(earcons.pcm("wake") or b"", dtype="<i2")
    played = np.frombuffer(out.read_bytes(), dtype="<i2")
    expected = (wake.astype(np.float32) * np.float32(0.125)).astype(np.int16)
    assert np.abs(played[: len(wake)].astype(int) - expected).max() <= 1
    assert not played[len(wake) :].any()


async def test_a_device_name_that_does_not_exist_is_reported_clearly() -> None:
    states: list[DeviceState] = []
    capture = Capture(
        AudioConfig(capture_device="nosuchmic"),
        on_state=lambda s, e: states.append(s),
        retry_s=(0.05, 0.1),
    )
    playback = Playback(AudioConfig(playback_device="nosuchspk"), retry_s=(0.05, 0.1))
    await capture.start()
    await playback.start()
    await eventually(lambda: capture.error is not None and playback.error is not None)
    mic_error, spk_error = str(capture.error), str(playback.error)
    await capture.stop()
    await playback.close()
    assert DeviceState.MISSING in states
    assert "'nosuchmic'" in mic_error and "arecord -L" in mic_error
    assert "'nosuchspk'" in spk_error and "aplay -L" in spk_error


async def test_a_capture_device_that_appears_later_is_picked_up(
    alsa_rig: AlsaRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    alsa_rig.apply(monkeypatch)  # no devices yet: "latemic" is unknown
    capture = Capture(AudioConfig(capture_device="latemic"), retry_s=(0.05, 0.1))
    await capture.start()
    await eventually(lambda: capture.state == DeviceState.MISSING)
    infile = alsa_rig.directory / "late.raw"
    infile.write_bytes(noise(3200).tobytes())
    # alsa-lib reloads its config when the list of files changes (mtimes have 1 s
    # resolution there), so the "plugged in" device comes as a new config file.
    plugged = AlsaRig(alsa_rig.directory / "plugged")
    plugged.file_capture("latemic", infile)
    plugged.apply(monkeypatch)
    await eventually(lambda: capture.state == DeviceState.OK and capture.periods_read > 0)
    await capture.stop()


async def test_an_unexpected_open_error_is_reported_and_the_thread_lives_on() -> None:
    # Found: a NUL in the device name made pyalsaaudio raise ValueError; the capture
    # thread died of it while the daemon still said idle. (The config refuses such a
    # name now; the thread must survive whatever the library raises anyway.)
    states: list[DeviceState] = []
    cfg = AudioConfig().model_copy(update={"capture_device": "bad\x00mic"})
    capture = Capture(cfg, on_state=lambda s, e: states.append(s), retry_s=(0.05, 0.1))
    await capture.start()
    await eventually(lambda: DeviceState.FAILED in states)
    error = str(capture.error)
    await asyncio.sleep(0.3)  # a few retries later
    thread = capture._thread
    assert thread is not None and thread.is_alive()
    await capture.stop()
    assert "embedded null character" in error and "arecord -L" in error
