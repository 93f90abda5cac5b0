"""The control socket's verbs on the running daemon, and why an awaited turn ended.

Kept beside `app.py` so the wiring does not grow by a verb each time; `ControlServer`
(control.py) parses requests and calls these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from appliance.config import Config
from appliance.daemon import state
from appliance.daemon.control import RequestError

if TYPE_CHECKING:
    from appliance.daemon.app import Appliance
    from appliance.timers.keeper import TimerKeeper


class TurnIncomplete(Exception):
    """The conversation ended before the awaited turn did; the message says why."""


def why_ended(event: state.Event | None, config: Config) -> str:
    """A conversation that ended on `event`, in words for `appliance ask`."""
    match event:
        case state.Timeout():
            return f"no answer from the service within {config.behaviour.reply_timeout_s:g} s"
        case state.SessionLost(reason=reason):
            return f"the connection to the service dropped ({reason or 'no reason given'})"
        case state.Stop():
            return "stopped (`appliance stop` or a double press)"
        case state.Press() | state.Wake():
            return "ended by a press"
        case state.Mute():
            return "muted"
    return "the conversation ended"


class ControlVerbs:
    """The control socket's verbs, carried out on the daemon (most as inbox items)."""

    def __init__(self, app: Appliance) -> None:
        self.app = app

    async def talk(self) -> None:
        self.app.post(state.Press())

    async def stop(self) -> None:
        self.app.post(state.Stop())

    async def mute(self, on: bool) -> None:
        self.app.post(state.Mute(on=on))

    async def status(self) -> dict[str, Any]:
        return self.app.status()

    async def timers(self) -> list[dict[str, Any]]:
        return self._keeper().listing()

    async def cancel_timer(self, timer_id: str) -> str:
        entry = self._keeper().cancel(timer_id)
        if entry is None:
            raise RequestError(f"no timer or alarm {timer_id!r}: `appliance timers` lists them")
        return f"{entry.id} {entry.describe()}"

    def _keeper(self) -> TimerKeeper:
        if self.app.timers is None:
            raise RequestError("timers are off: [timers] enabled = false in the config")
        return self.app.timers

    def ask(self, text: str) -> AsyncIterator[tuple[str, str]]:
        return self._turn(state.Ask(text))

    def say(self, text: str) -> AsyncIterator[tuple[str, str]]:
        return self._turn(state.Ask(text, verbatim=True))

    async def _turn(self, item: state.Ask) -> AsyncIterator[tuple[str, str]]:
        if not item.text.strip():
            raise RequestError("nothing to send: the text is empty")
        if self.app.machine.state == "muted":
            raise RequestError("the appliance is muted: `appliance mute off` first")
        if self.app.machine.state == "idle" and self.app.limit_reached():
            raise RequestError(self.app.limit_message())
        try:
            async for line in self.app.transcript_of_next_turn(item):
                yield line
        except TurnIncomplete as exc:  # e.g. no API key, offline, the session dropped
            raise RequestError(f"no complete answer: {exc}") from None
