"""Timers and alarms as functions the model calls: set, list, cancel.

All four answer at once (the work is a write to a small file), so they are BLOCKING:
the model confirms with the real ring time, or says what was wrong with the request.
"""

from __future__ import annotations

from typing import Any

from appliance.timers.book import WEEKDAYS, BookFull
from appliance.timers.keeper import TimerKeeper
from appliance.tools.base import Tool, ToolContext

_WEEKDAY_NAMES = {name: i for i, name in enumerate(WEEKDAYS)}
_GROUPS = {"weekdays": [0, 1, 2, 3, 4], "weekends": [5, 6], "daily": list(range(7))}
_INT, _STR = "INTEGER", "STRING"


class TimerTools:
    """The tool source for `Toolbox`, over the daemon's `TimerKeeper`."""

    name = "timers"

    def __init__(self, keeper: TimerKeeper) -> None:
        self.keeper = keeper

    async def tools(self) -> list[Tool]:
        return [
            Tool(_SET_TIMER, self._set_timer),
            Tool(_SET_ALARM, self._set_alarm),
            Tool(_LIST, self._list),
            Tool(_CANCEL, self._cancel),
        ]

    async def _set_timer(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        seconds = 3600 * _number(args, "hours") + 60 * _number(args, "minutes")
        seconds += _number(args, "seconds")
        try:
            entry = self.keeper.add_timer(seconds, _label(args))
        except (ValueError, BookFull) as exc:
            return {"error": str(exc)}
        return {"result": "timer set", **entry.public(self.keeper.clock.now().tzinfo)}

    async def _set_alarm(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        try:
            days = _weekdays(args.get("repeat") or [])
            entry = self.keeper.add_alarm(str(args.get("time", "")), _label(args), days)
        except (ValueError, BookFull) as exc:
            return {"error": str(exc)}
        return {"result": "alarm set", **entry.public(self.keeper.clock.now().tzinfo)}

    async def _list(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        return {"timers_and_alarms": self.keeper.listing()}

    async def _cancel(self, ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        entry_id = str(args.get("id", ""))
        entry = self.keeper.cancel(entry_id)
        if entry is None:
            known = ", ".join(e["id"] for e in self.keeper.listing()) or "none are set"  # type: ignore[misc]
            return {"error": f"no timer or alarm {entry_id!r} (set: {known})"}
        return {"result": f"cancelled the {entry.describe()}"}


def _number(args: dict[str, Any], key: str) -> float:
    value = args.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _label(args: dict[str, Any]) -> str:
    return str(args.get("label") or "")[:60]


def _weekdays(names: list[Any]) -> list[int]:
    days: set[int] = set()
    for name in names:
        key = str(name).strip().lower()
        if key in _GROUPS:
            days.update(_GROUPS[key])
        elif key in _WEEKDAY_NAMES:
            days.add(_WEEKDAY_NAMES[key])
        else:
            raise ValueError(f"unknown day {name!r}: use monday..sunday, weekdays, weekends, daily")
    return sorted(days)


_SET_TIMER = {
    "name": "set_timer",
    "description": "Start a countdown timer on the device; it rings when it ends.",
    "parameters": {
        "type": "OBJECT",
        "properties": {
            "hours": {"type": _INT},
            "minutes": {"type": _INT},
            "seconds": {"type": _INT},
            "label": {"type": _STR, "description": "what it is for, e.g. pasta"},
        },
    },
    "behavior": "BLOCKING",
}
_SET_ALARM = {
    "name": "set_alarm",
    "description": "Set an alarm at a local time of day; it rings then.",
    "parameters": {
        "type": "OBJECT",
        "properties": {
            "time": {"type": _STR, "description": "24-hour local time, HH:MM"},
            "label": {"type": _STR},
            "repeat": {
                "type": "ARRAY",
                "items": {"type": _STR},
                "description": "days it repeats: monday..sunday, weekdays, weekends, daily; "
                "empty: once",
            },
        },
        "required": ["time"],
    },
    "behavior": "BLOCKING",
}
_LIST = {
    "name": "list_timers",
    "description": "The timers and alarms that are set, with their ids and ring times.",
    "behavior": "BLOCKING",
}
_CANCEL = {
    "name": "cancel_timer",
    "description": "Cancel a timer or alarm by its id (from list_timers or set_*).",
    "parameters": {
        "type": "OBJECT",
        "properties": {"id": {"type": _STR}},
        "required": ["id"],
    },
    "behavior": "BLOCKING",
}
