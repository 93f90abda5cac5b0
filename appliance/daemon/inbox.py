"""The items the daemon's one inbox carries, besides the state machine's own events.

They live apart from `app.py` so that the parts which post them (the Live session, the
audio devices, a control client waiting on a turn) and the loop that takes them share
one definition without importing the wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appliance.audio.devices import DeviceState
from appliance.daemon import state
from appliance.live import events as ev
from appliance.live.errors import LiveError


@dataclass(frozen=True, slots=True)
class Live:
    """A Live event, tagged with the session it came from (stale ones are ignored)."""

    session: int
    event: ev.LiveEvent


@dataclass(frozen=True, slots=True)
class Connected:
    """A session's connect attempt ended: `error` is None if it is up."""

    session: int
    error: LiveError | None


@dataclass(frozen=True, slots=True)
class Device:
    """An audio device changed state (missing, busy, running...)."""

    name: str
    state: DeviceState
    message: str | None


@dataclass(frozen=True, slots=True)
class Call:
    """Run a function on the loop, in order with everything else (e.g. a reload)."""

    fn: Callable[[], Any]


@dataclass(slots=True)
class Request:
    """An event a control client waits on (`ask`, `say`): dropped unhandled if the
    client left before it came up (an old `ask` opened a session 40 s after its client
    had gone, once a stuck inbox moved again)."""

    event: state.Event
    withdrawn: bool = False


Item = state.Event | Live | Connected | Device | Call | Request
