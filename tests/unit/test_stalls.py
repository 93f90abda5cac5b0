"""Parking a stalled handle until its device answers again (appliance/audio/stalls.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from appliance.audio import stalls
from appliance.audio.devices import PcmSpec, open_alsa


class Handle:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.fixture(autouse=True)
def no_parked_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry is the process's: earlier tests in this run may have parked some."""
    monkeypatch.setattr(stalls, "_parked", {})


def test_a_parked_handle_stays_open_until_its_device_is_reclaimed() -> None:
    first, second, other = Handle(), Handle(), Handle()
    stalls.park(first, "spk", "playback")
    stalls.park(second, "spk", "playback")
    stalls.park(other, "mic", "capture")
    assert stalls.parked("spk") == 2 and (first.closed, second.closed) == (0, 0)

    stalls.reclaim("spk", "playback")

    assert (first.closed, second.closed, other.closed) == (1, 1, 0)
    assert stalls.parked("spk") == 0 and stalls.parked("mic") == 1
    stalls.reclaim("mic", "capture")
    assert other.closed == 1


def test_a_device_answering_one_way_closes_only_that_way_s_handles() -> None:
    # "default" is both microphone and speaker: a microphone that answers again says
    # nothing of a hung Bluetooth speaker, whose handle could block us in close().
    mic, speaker = Handle(), Handle()
    stalls.park(mic, "default", "capture")
    stalls.park(speaker, "default", "playback")
    stalls.reclaim("default", "capture")
    assert (mic.closed, speaker.closed) == (1, 0)
    assert stalls.parked("default") == stalls.parked("default", "playback") == 1
    stalls.reclaim("default", "playback")
    assert speaker.closed == 1


def test_an_unknown_device_is_an_answer_not_a_hang() -> None:
    pytest.importorskip("alsaaudio")
    assert stalls.answers("no-such-device-here", "playback")


def test_a_child_that_does_not_finish_in_time_counts_as_hung(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stalls, "_PROBE", "import time; print('ready', flush=True); time.sleep(30)")
    assert not stalls.answers("anything", "capture", within_s=0.5)


def test_a_child_that_never_gets_ready_counts_as_hung(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stalls, "_PROBE", "import time; time.sleep(30)")
    assert not stalls.answers("anything", "capture", start_within_s=0.5)


def test_a_slow_python_start_is_not_a_hung_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Pi Zero 2 W under load takes seconds to start Python: only the open and close
    # count against the bound, or a healthy device would never be reopened.
    monkeypatch.setattr(stalls, "_PROBE", "import time; time.sleep(1.5); print('ready')")
    assert stalls.answers("anything", "capture", within_s=0.5)


class FakeAlsaPcm:
    """`alsaaudio.PCM` as `open_alsa` calls it: a `hw:` device is busy while a handle of
    ours (parked) holds it; a sound server's device opens beside one."""

    exclusive = False

    def __init__(self, **kw: Any) -> None:
        if self.exclusive and stalls.parked(kw["device"], "playback"):
            alsaaudio = pytest.importorskip("alsaaudio")
            raise alsaaudio.ALSAAudioError("Device or resource busy [hw:1,0]")
        self.kw = kw

    def info(self) -> dict[str, Any]:
        return {"rate": self.kw["rate"], "channels": self.kw["channels"], "format_name": "S16_LE"}

    def close(self) -> None:
        pass


@pytest.fixture
def fake_alsa(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeAlsaPcm]]:
    alsaaudio = pytest.importorskip("alsaaudio")
    monkeypatch.setattr(alsaaudio, "PCM", FakeAlsaPcm)
    monkeypatch.setattr(stalls, "answers", lambda device, direction: True)
    yield FakeAlsaPcm


SPEC = PcmSpec("spk", "playback", 24000, 1, 480, 4, after_stall=True)


def test_a_sound_server_s_stalled_handles_are_never_closed_in_process(
    fake_alsa: type[FakeAlsaPcm],
) -> None:
    # A JACK server that died and was started again: closing the old server's handle
    # segfaults in libjack (tests/integration/audio/test_audio_jack_rig.py). The device
    # opens beside it, so it is left parked.
    old = Handle()
    stalls.park(old, "spk", "playback")
    open_alsa(SPEC)
    assert old.closed == 0 and stalls.parked("spk") == 1


def test_a_device_our_stalled_handle_keeps_busy_gets_it_closed_and_opens(
    fake_alsa: type[FakeAlsaPcm], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_alsa, "exclusive", True)
    old = Handle()
    stalls.park(old, "spk", "playback")
    assert isinstance(open_alsa(SPEC), FakeAlsaPcm)
    assert old.closed == 1 and stalls.parked("spk") == 0
