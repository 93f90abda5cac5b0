"""What a button gesture asks of the state machine, by turn-taking mode.

The button (hardware/button.py) reports gestures and the action the config gives each;
this decides which state-machine event, if any, that is. Kept apart from `app.py` so
the mapping is one plain function, not a branch of the wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.daemon import state

if TYPE_CHECKING:
    from appliance.hardware.button import ButtonEvent


def button_event(event: ButtonEvent, *, mode: str, muted: bool) -> state.Event | None:
    """The event for a `ButtonEvent`: in `hold` mode the raw edges (down talks, up ends
    the turn); otherwise the configured action (`talk`, `stop`, `mute` toggles)."""
    gesture, action = str(event.gesture), str(event.action)
    if mode == "hold":
        if gesture in ("down", "up"):
            return state.Press() if gesture == "down" else state.Release()
        return None
    return action_event(action, muted=muted)


def action_event(action: str, *, muted: bool) -> state.Event | None:
    """The event for a configured button action; None for `none`."""
    if action == "talk":
        return state.Press()
    if action == "stop":
        return state.Stop()
    if action == "mute":
        return state.Mute(on=not muted)
    return None
