"""The button's gestures as state-machine events, in each turn-taking mode."""

from __future__ import annotations

import pytest

from appliance.daemon import state
from appliance.daemon.button_events import button_event
from appliance.hardware.button import ButtonEvent, Gesture


def _event(gesture: Gesture, action: str = "none") -> ButtonEvent:
    return ButtonEvent(gesture, action, 0.0)  # type: ignore[arg-type]


def test_hold_mode_takes_the_raw_edges_and_ignores_gestures() -> None:
    assert button_event(_event(Gesture.DOWN), mode="hold", muted=False) == state.Press()
    assert button_event(_event(Gesture.UP), mode="hold", muted=False) == state.Release()
    assert button_event(_event(Gesture.PRESS, "talk"), mode="hold", muted=False) is None


@pytest.mark.parametrize(
    ("action", "muted", "expected"),
    [
        ("talk", False, state.Press()),
        ("stop", False, state.Stop()),
        ("mute", False, state.Mute(on=True)),
        ("mute", True, state.Mute(on=False)),
        ("none", False, None),
    ],
)
def test_toggle_mode_takes_the_configured_action(
    action: str, muted: bool, expected: state.Event | None
) -> None:
    assert button_event(_event(Gesture.PRESS, action), mode="toggle", muted=muted) == expected
    assert button_event(_event(Gesture.DOWN), mode="toggle", muted=muted) is None
