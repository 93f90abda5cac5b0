"""Parking a stalled handle until its device answers again (appliance/audio/stalls.py)."""

from __future__ import annotations

import pytest

from appliance.audio import stalls


class Handle:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


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
