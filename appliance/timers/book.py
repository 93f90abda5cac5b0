"""What is set: timers and alarms, kept in `timers.json` in the state directory.

Every entry stores the UTC instant it is next due, so a timer set before a restart or a
reboot rings on time. A repeating alarm gets its next instant when it rings. The file is
validated on load (a corrupt one is moved aside and the appliance starts with none, as
every state file); each change is written at once, atomically.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from appliance import state_files

log = logging.getLogger(__name__)

FILE = "timers.json"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_GROUPS = {
    (): "once",
    (0, 1, 2, 3, 4): "weekdays",
    (5, 6): "weekends",
    tuple(range(7)): "daily",
}
MAX_ENTRIES = 50
"""More than a kitchen needs; a model in a loop cannot fill the disk."""
MAX_TIMER_S = 7 * 24 * 3600


class Entry(BaseModel):
    """One timer or alarm."""

    id: str
    kind: Literal["timer", "alarm"]
    label: str = ""
    due: dt.datetime
    """When it rings next (timezone-aware)."""
    duration_s: float | None = None
    """A timer's length, for "the 10-minute timer"."""
    at: str | None = None
    """An alarm's local wall time, "HH:MM"."""
    weekdays: list[int] = Field(default_factory=list)
    """A repeating alarm's days, 0 = Monday; empty: rings once."""

    def describe(self, zone: dt.tzinfo | None = None) -> str:
        """ "timer 'pasta' (10 min)" / "alarm 07:00 on weekdays": for the log and the model."""
        label = f" {self.label!r}" if self.label else ""
        if self.kind == "timer":
            return f"timer{label} ({_duration(self.duration_s or 0)})"
        days = _DAY_GROUPS.get(tuple(self.weekdays)) or ", ".join(
            WEEKDAYS[d] for d in self.weekdays
        )
        return f"alarm{label} at {self.at} ({days})"

    def public(self, zone: dt.tzinfo | None = None) -> dict[str, object]:
        """What the model and `appliance timers` see."""
        due = self.due.astimezone(zone)
        out: dict[str, object] = {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "rings_at": due.isoformat(timespec="seconds"),
        }
        if self.kind == "alarm":
            out["repeat"] = [WEEKDAYS[d] for d in self.weekdays]
        else:
            out["duration"] = _duration(self.duration_s or 0)
        return out


class _Saved(BaseModel):
    next_id: int = Field(1, ge=1)
    entries: list[Entry] = Field(default_factory=list)


class BookFull(ValueError):
    """Too many timers and alarms at once."""


class TimerBook:
    """The timers and alarms, persisted in `state_dir/timers.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE
        saved = state_files.load(self.path, _Saved) or _Saved()
        self._next_id = saved.next_id
        self.entries: dict[str, Entry] = {e.id: e for e in saved.entries}

    def add_timer(self, seconds: float, label: str, now: dt.datetime) -> Entry:
        if not 1 <= seconds <= MAX_TIMER_S:
            raise ValueError(f"a timer runs 1 s to {MAX_TIMER_S // 86400} days, not {seconds} s")
        # In UTC: aware arithmetic in a local zone is wall-clock arithmetic, and a
        # 10-minute timer across a daylight-saving change still lasts 10 minutes.
        due = (now.astimezone(dt.UTC) + dt.timedelta(seconds=seconds)).astimezone(now.tzinfo)
        return self._add(Entry(id="", kind="timer", label=label, due=due, duration_s=seconds))

    def add_alarm(self, at: str, label: str, weekdays: list[int], now: dt.datetime) -> Entry:
        hour, minute = parse_clock_time(at)
        days = sorted(set(weekdays))
        if any(not 0 <= d <= 6 for d in days):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        at = f"{hour:02d}:{minute:02d}"
        due = next_occurrence(hour, minute, days, now)
        return self._add(Entry(id="", kind="alarm", label=label, due=due, at=at, weekdays=days))

    def cancel(self, entry_id: str) -> Entry | None:
        entry = self.entries.pop(entry_id, None)
        if entry is not None:
            self._save()
        return entry

    def upcoming(self) -> list[Entry]:
        return sorted(self.entries.values(), key=lambda e: e.due)

    def next_due(self) -> Entry | None:
        entries = self.upcoming()
        return entries[0] if entries else None

    def rang(self, entry: Entry, now: dt.datetime) -> None:
        """`entry` rang (or was missed): a repeating alarm moves to its next day, the
        rest are done."""
        if entry.id not in self.entries:
            return
        if entry.kind == "alarm" and entry.weekdays and entry.at:
            hour, minute = parse_clock_time(entry.at)
            after = max(now, entry.due) + dt.timedelta(seconds=1)
            entry.due = next_occurrence(hour, minute, entry.weekdays, after)
        else:
            del self.entries[entry.id]
        self._save()

    def _add(self, entry: Entry) -> Entry:
        if len(self.entries) >= MAX_ENTRIES:
            raise BookFull(f"{MAX_ENTRIES} timers and alarms are set; cancel one first")
        prefix = "t" if entry.kind == "timer" else "a"
        entry.id = f"{prefix}{self._next_id}"
        self._next_id += 1
        self.entries[entry.id] = entry
        self._save()
        return entry

    def _save(self) -> None:
        state_files.save(self.path, _Saved(next_id=self._next_id, entries=self.upcoming()))


def parse_clock_time(text: str) -> tuple[int, int]:
    """ "7:05", "07:05", "19:30" -> (hour, minute); anything else is a ValueError."""
    try:
        hour_text, minute_text = text.strip().split(":")[:2]
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        raise ValueError(f"give the time as HH:MM (24-hour), not {text!r}") from None
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"give the time as HH:MM (24-hour), not {text!r}")
    return hour, minute


def next_occurrence(hour: int, minute: int, weekdays: list[int], after: dt.datetime) -> dt.datetime:
    """The first local `hour:minute` strictly after `after` (on one of `weekdays`, if any).

    Computed on the local calendar, so 07:00 stays 07:00 across a daylight-saving change.
    A wall time the change skips (02:30 on the spring-forward night) rings at the same
    instant the hour before would have (03:30 new time); one the change repeats rings at
    its first occurrence.
    """
    zone = after.tzinfo
    assert zone is not None, "a timezone-aware time is needed"
    day = after.date()
    for _ in range(8):
        if not weekdays or day.weekday() in weekdays:
            wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            when = _resolve(wall)
            if when > after:
                return when
        day += dt.timedelta(days=1)
    raise AssertionError("no occurrence within 8 days")  # weekdays are never empty here


def _resolve(wall: dt.datetime) -> dt.datetime:
    """A local wall time as a real instant: through UTC and back, so a skipped time lands
    after the gap (zoneinfo alone would keep the impossible 02:30)."""
    return wall.astimezone(dt.UTC).astimezone(wall.tzinfo)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
        f"{secs} s" if secs else "",
    ]
    return " ".join(p for p in parts if p) or "0 s"
