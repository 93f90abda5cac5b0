"""Small audio parts: error naming, xrun summaries, sample maths, volume, earcons."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from appliance.audio import dsp
from appliance.audio.devices import (
    AudioDeviceError,
    Backoff,
    DeviceBusyError,
    DeviceMissingError,
    XrunLog,
    classify,
)
from appliance.audio.earcons import EARCONS, Earcons
from appliance.audio.volume import Volume
from appliance.config import AudioConfig


def s16(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(2, "little", signed=True) for v in values)


def values(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "little", signed=True) for i in range(0, len(data), 2)]


def test_errors_are_classified_and_name_the_device_and_the_lister() -> None:
    busy = classify(Exception("Device or resource busy [hw:1]"), "hw:1", "capture")
    missing = classify(Exception("No such file or directory [usbmic]"), "usbmic", "capture")
    other = classify(Exception("Invalid argument [x]"), "x", "playback")
    assert isinstance(busy, DeviceBusyError) and "busy" in str(busy) and "hw:1" in str(busy)
    assert isinstance(missing, DeviceMissingError) and "arecord -L" in str(missing)
    assert type(other) is AudioDeviceError and "aplay -L" in str(other)
    assert busy.state != missing.state


def test_xrun_log_summarises_instead_of_logging_each(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    xruns = XrunLog("underruns", "spk", logging.getLogger("t"), every_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            xruns.record()
            now[0] += 0.1
        assert len(caplog.records) == 1  # the first, at once
        now[0] += 60
        xruns.tick()
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().startswith("49 underruns on 'spk' since ")
    assert xruns.total == 50


def test_backoff_doubles_up_to_a_cap_and_resets() -> None:
    b = Backoff(0.5, 3)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1, 2, 3, 3]
    b.reset()
    assert b.next_delay() == 0.5


def test_gain_clips_instead_of_wrapping() -> None:
    out = values(dsp.apply_gain(s16([1000, -1000, 20000, -20000, 0]), dsp.db_to_gain(20)))
    assert out == [10000, -10000, 32767, -32768, 0]


def test_pick_channel_from_interleaved_frames() -> None:
    data = s16([1, 10, 2, 20, 3, 30])
    assert values(dsp.pick_channel(data, 2, 0)) == [1, 2, 3]
    assert values(dsp.pick_channel(data, 2, 1)) == [10, 20, 30]
    assert dsp.pick_channel(data, 1, 0) is data  # mono: no copy


def test_volume_persists_in_the_state_dir(tmp_path: Path) -> None:
    config = AudioConfig(volume=80)
    v = Volume(config, tmp_path)
    assert v.percent == 80
    assert v.set(130) == 100 and v.software_gain == 1.0
    assert v.change(-60) == 40
    assert json.loads((tmp_path / "volume.json").read_text()) == {"percent": 40}
    again = Volume(config, tmp_path)
    assert again.percent == 40
    assert again.software_gain == pytest.approx(0.064)


def test_volume_uses_the_mixer_when_configured_and_falls_back_without() -> None:
    set_to: list[int] = []

    class FakeMixer:
        def setvolume(self, volume: int) -> None:
            set_to.append(volume)

    config = AudioConfig(volume=70, mixer="Speaker", mixer_card="seeed2micvoicec")
    v = Volume(config, mixer_factory=lambda control, card: FakeMixer())
    v.set(30)
    assert set_to == [70, 30] and v.uses_mixer and v.software_gain == 1.0

    def broken(control: str, card: str | None) -> FakeMixer:
        raise OSError("no control Speaker")

    v2 = Volume(config, mixer_factory=broken)
    assert not v2.uses_mixer and v2.software_gain == pytest.approx(0.343)


def test_earcons_are_short_distinct_clean_and_can_be_disabled() -> None:
    earcons = Earcons(EARCONS)
    sounds = {name: earcons.pcm(name) for name in EARCONS}
    assert len(set(sounds.values())) == 4
    for pcm in sounds.values():
        assert pcm is not None
        samples = values(pcm)
        assert 0.1 <= len(samples) / 24000 <= 0.3
        assert max(abs(s) for s in samples) < 32767  # no clipping
        assert abs(samples[0]) < 200 and abs(samples[-1]) < 200  # faded: no click
    assert earcons.pcm("wake") is sounds["wake"]  # cached
    assert Earcons(("done",)).pcm("wake") is None
    with pytest.raises(ValueError, match="unknown earcon"):
        Earcons(("beep",))


def test_a_stalled_device_error_is_reported_once_not_wrapped() -> None:
    from appliance.audio.devices import DeviceStalledError, classify

    stalled = DeviceStalledError("rigmic", "capture", "no audio for 1000 ms")
    assert classify(stalled, "rigmic", "capture") is stalled
    assert str(stalled).count("rigmic") == 1 and "arecord -L" in str(stalled)
