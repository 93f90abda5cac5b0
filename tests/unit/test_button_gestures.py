"""The gesture logic on a virtual clock: exact timing, every path, no threads."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from appliance.config import ButtonActions, ButtonConfig
from appliance.hardware.button import ButtonEvent, Gesture, GestureRecognizer, TurnMode
from tests.rig.gpio import VirtualScheduler

DEFAULT = ButtonConfig(pin=17)  # bounce 20 ms, hold 3 s, double 400 ms; talk/stop/mute


class Hand:
    """Presses a button on a virtual clock and collects what the recognizer emits."""

    def __init__(self, config: ButtonConfig = DEFAULT, mode: TurnMode = "toggle") -> None:
        self.clock = VirtualScheduler()
        self.events: list[ButtonEvent] = []
        self.rec = GestureRecognizer(config, self.clock, self.events.append, mode=mode)
        self.t0 = self.clock.time()

    def set(self, pressed: bool) -> None:
        self.rec.edge(pressed, self.clock.time())

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def click(self, duration: float = 0.1) -> None:
        self.set(True)
        self.wait(duration)
        self.set(False)

    def gestures(self) -> list[tuple[str, str]]:
        return [(e.gesture.value, e.action) for e in self.events]

    def decided(self) -> list[tuple[str, str]]:
        return [g for g in self.gestures() if g[0] not in ("down", "up")]

    def at(self, gesture: Gesture) -> Sequence[float]:
        return [round(e.at - self.t0, 6) for e in self.events if e.gesture == gesture]


def test_single_press_waits_for_the_double_press_window() -> None:
    hand = Hand()
    hand.click(0.1)
    hand.wait(0.2)  # 0.3 s after the press went down: still inside the 0.4 s window
    assert hand.decided() == []
    hand.wait(1.0)
    assert hand.gestures() == [("down", "none"), ("up", "none"), ("press", "talk")]
    assert hand.at(Gesture.PRESS) == [0.4]


def test_press_longer_than_the_window_is_decided_on_release() -> None:
    hand = Hand()
    hand.click(0.7)
    hand.wait(0.05)  # the release settles after the 20 ms bounce time
    assert hand.decided() == [("press", "talk")]
    assert hand.at(Gesture.PRESS) == [0.7]


def test_double_press_fires_once_and_never_a_single_press() -> None:
    hand = Hand()
    hand.click(0.08)
    hand.wait(0.12)
    hand.click(0.08)
    hand.wait(5.0)
    assert hand.decided() == [("double_press", "stop")]
    assert hand.at(Gesture.DOUBLE_PRESS) == [0.2]
    assert [g for g, _ in hand.gestures()].count("down") == 2


def test_two_presses_further_apart_than_the_window_are_two_presses() -> None:
    hand = Hand()
    hand.click(0.1)
    hand.wait(0.5)
    hand.click(0.1)
    hand.wait(1.0)
    assert hand.decided() == [("press", "talk"), ("press", "talk")]


def test_hold_fires_at_hold_time_while_still_down_and_release_adds_nothing() -> None:
    hand = Hand()
    hand.set(True)
    hand.wait(2.9)
    assert hand.decided() == []
    hand.wait(0.2)
    assert hand.decided() == [("hold", "mute")]
    assert hand.at(Gesture.HOLD) == [3.0]
    hand.wait(1.0)
    hand.set(False)
    hand.wait(1.0)
    assert hand.decided() == [("hold", "mute")]


def test_bounce_noise_is_filtered_to_one_clean_edge() -> None:
    hand = Hand()
    for _ in range(4):  # 8 edges, 2 ms apart, then the contact settles closed
        hand.set(True)
        hand.wait(0.002)
        hand.set(False)
        hand.wait(0.002)
    hand.set(True)
    hand.wait(0.1)
    for _ in range(3):  # release with bounce
        hand.set(False)
        hand.wait(0.003)
        hand.set(True)
        hand.wait(0.003)
    hand.set(False)
    hand.wait(1.0)
    assert hand.gestures() == [("down", "none"), ("up", "none"), ("press", "talk")]


def test_a_spike_shorter_than_the_bounce_time_is_no_press() -> None:
    hand = Hand()
    hand.set(True)
    hand.wait(0.015)
    hand.set(False)
    hand.wait(2.0)
    assert hand.events == []


def test_no_double_or_hold_action_fires_press_on_the_way_down() -> None:
    config = ButtonConfig(pin=17, actions=ButtonActions(double_press="none", hold="none"))
    hand = Hand(config)
    hand.set(True)
    hand.wait(0.05)  # past the 20 ms bounce time, still held
    assert hand.decided() == [("press", "talk")]
    assert hand.at(Gesture.PRESS) == [0.0]
    hand.wait(5.0)  # held long: no hold gesture, and release adds nothing
    hand.set(False)
    hand.wait(1.0)
    assert hand.decided() == [("press", "talk")]


def test_hold_action_only_decides_a_short_press_on_release() -> None:
    config = ButtonConfig(pin=17, actions=ButtonActions(double_press="none"))
    hand = Hand(config)
    hand.click(0.15)
    hand.wait(0.05)
    assert hand.decided() == [("press", "talk")]
    assert hand.at(Gesture.PRESS) == [0.15]


def test_zero_bounce_time_passes_edges_through() -> None:
    hand = Hand(ButtonConfig(pin=17, bounce_ms=0))
    hand.set(True)
    hand.wait(0)
    assert hand.gestures() == [("down", "none")]


@pytest.mark.parametrize("duration", [0.1, 4.0])
def test_hold_mode_gives_only_down_and_up(duration: float) -> None:
    hand = Hand(mode="hold")
    hand.click(duration)
    hand.wait(0.05)
    hand.click(0.05)
    hand.wait(5.0)
    assert hand.gestures() == [("down", "none"), ("up", "none")] * 2


def test_close_drops_pending_gestures() -> None:
    hand = Hand()
    hand.click(0.1)
    hand.rec.close()
    hand.wait(1.0)
    assert hand.decided() == []
