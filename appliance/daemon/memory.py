"""What the daemon keeps in its state directory: the conversation handle and token usage.

Both are small JSON files written atomically, so a power cut leaves the old file or the
new one, never half of one. The resumption handle is what lets "and what about
tomorrow?" follow "what's the weather today?" across two presses, or a restart; it is
kept only for `[behaviour] remember_s` (the service honours handles for about two hours).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.live.events import Usage

log = logging.getLogger(__name__)

HANDLE_FILE = "session.json"
USAGE_FILE = "usage.json"


def _write_json(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot write %s: %s", path, exc)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return None


class HandleStore:
    """The newest session resumption handle, with the wall-clock time it was saved."""

    def __init__(
        self, state_dir: Path, remember_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = state_dir / HANDLE_FILE
        self.remember_s = remember_s
        self._clock = clock

    def load(self) -> str | None:
        """The handle if it is younger than `remember_s`, else None (and forget it)."""
        if self.remember_s <= 0:
            return None
        data = _read_json(self._path)
        if not isinstance(data, dict) or not isinstance(data.get("handle"), str):
            return None
        if self._clock() - float(data.get("saved_at", 0)) > self.remember_s:
            self.forget()
            return None
        return str(data["handle"])

    def save(self, handle: str) -> None:
        if self.remember_s > 0:
            _write_json(self._path, {"handle": handle, "saved_at": self._clock()})

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


@dataclass
class Tally:
    """Token counts summed over turns."""

    turns: int = 0
    prompt: int = 0
    response: int = 0
    cached: int = 0
    thoughts: int = 0
    total: int = 0
    by_modality: dict[str, int] = field(default_factory=dict)

    def add(self, usage: Usage) -> None:
        self.turns += 1
        self.prompt += usage.prompt_tokens
        self.response += usage.response_tokens
        self.cached += usage.cached_tokens
        self.thoughts += usage.thoughts_tokens
        self.total += usage.total_tokens
        for key, value in usage.by_modality.items():
            self.by_modality[key] = self.by_modality.get(key, 0) + value

    def as_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "prompt": self.prompt,
            "response": self.response,
            "cached": self.cached,
            "thoughts": self.thoughts,
            "total": self.total,
            "by_modality": dict(self.by_modality),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Tally:
        if not isinstance(data, dict):
            return cls()
        tally = cls()
        try:
            for name in ("turns", "prompt", "response", "cached", "thoughts", "total"):
                setattr(tally, name, max(0, int(data.get(name, 0))))
            modalities = data.get("by_modality", {})
            tally.by_modality = {str(k): max(0, int(v)) for k, v in dict(modalities).items()}
        except (TypeError, ValueError, OverflowError) as exc:  # a corrupt file never stops us
            log.warning("ignoring a corrupt usage tally (%s): counting from zero", exc)
            return cls()
        return tally

    def summary(self) -> str:
        modalities = ", ".join(f"{k} {v}" for k, v in sorted(self.by_modality.items()))
        return (
            f"{self.total} tokens in {self.turns} turns (prompt {self.prompt}, response "
            f"{self.response}, cached {self.cached}{'; ' + modalities if modalities else ''})"
        )


class UsageBook:
    """Token usage per conversation and per local day; the day's sum survives restarts."""

    def __init__(self, state_dir: Path, today: Callable[[], str] | None = None) -> None:
        self._path = state_dir / USAGE_FILE
        self._today = today or (lambda: datetime.date.today().isoformat())
        self.conversation = Tally()
        data = _read_json(self._path)
        self._day = self._today()
        saved_today = isinstance(data, dict) and data.get("day") == self._day
        self.day = Tally.from_dict(data.get("tally")) if saved_today else Tally()

    def add(self, usage: Usage) -> None:
        self._roll_over()
        self.conversation.add(usage)
        self.day.add(usage)
        _write_json(self._path, {"day": self._day, "tally": self.day.as_dict()})

    def _roll_over(self) -> None:
        today = self._today()
        if today != self._day:
            self._day, self.day = today, Tally()

    def today(self) -> Tally:
        """Today's tally (a new day starts at zero even before its first turn)."""
        self._roll_over()
        return self.day

    def end_conversation(self) -> Tally:
        """The finished conversation's tally; a new one starts."""
        done, self.conversation = self.conversation, Tally()
        return done
