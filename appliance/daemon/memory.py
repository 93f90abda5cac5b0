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

from pydantic import BaseModel, Field

from appliance import state_files
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


class _SavedHandle(BaseModel):
    """session.json."""

    handle: str = Field(min_length=1)
    saved_at: float = Field(allow_inf_nan=False)


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
        saved = state_files.load(self._path, _SavedHandle)
        if saved is None:
            return None
        if self._clock() - saved.saved_at > self.remember_s:
            self.forget()
            return None
        return saved.handle

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

    def summary(self) -> str:
        modalities = ", ".join(f"{k} {v}" for k, v in sorted(self.by_modality.items()))
        return (
            f"{self.total} tokens in {self.turns} turns (prompt {self.prompt}, response "
            f"{self.response}, cached {self.cached}{'; ' + modalities if modalities else ''})"
        )


class _SavedTally(BaseModel):
    turns: int = Field(0, ge=0, strict=True)
    prompt: int = Field(0, ge=0, strict=True)
    response: int = Field(0, ge=0, strict=True)
    cached: int = Field(0, ge=0, strict=True)
    thoughts: int = Field(0, ge=0, strict=True)
    total: int = Field(0, ge=0, strict=True)
    by_modality: dict[str, int] = Field(default_factory=dict)


class _SavedUsage(BaseModel):
    """usage.json: the day's tally."""

    day: str
    tally: _SavedTally


class UsageBook:
    """Token usage per conversation and per local day; the day's sum survives restarts."""

    def __init__(self, state_dir: Path, today: Callable[[], str] | None = None) -> None:
        self._path = state_dir / USAGE_FILE
        self._today = today or (lambda: datetime.date.today().isoformat())
        self.conversation = Tally()
        saved = state_files.load(self._path, _SavedUsage)
        self._day = self._today()
        if saved is not None and saved.day == self._day:
            self.day = Tally(**saved.tally.model_dump())
        else:
            self.day = Tally()

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
