"""Short generated sounds (wake, done, error, offline), made in code and cached.

Generating them avoids shipping WAV files and keeps them at the playback rate, so they
go through the same queue as replies (`Playback.enqueue` + `drain`) with no resampling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Literal, get_args

from appliance.audio import dsp
from appliance.audio.playback import PLAYBACK_RATE, Playback

EarconName = Literal["wake", "done", "error", "offline"]
EARCONS: tuple[EarconName, ...] = get_args(EarconName)

# (start Hz, end Hz, seconds) per segment: rising = listening, falling = done,
# low double = error, three descending = offline. Each under 0.3 s.
_SHAPES: dict[str, list[tuple[float, float, float]]] = {
    "wake": [(660, 990, 0.12)],
    "done": [(880, 587, 0.12)],
    "error": [(330, 330, 0.09), (0, 0, 0.04), (330, 330, 0.09)],
    "offline": [(784, 784, 0.07), (587, 587, 0.07), (392, 392, 0.1)],
}


class Earcons:
    """The enabled earcons (`audio.earcons`); a disabled one plays nothing."""

    def __init__(self, enabled: Iterable[str] = EARCONS, rate: int = PLAYBACK_RATE) -> None:
        self.enabled = frozenset(enabled)
        unknown = self.enabled - set(EARCONS)
        if unknown:
            raise ValueError(f"unknown earcon(s) {sorted(unknown)}; known: {list(EARCONS)}")
        self._rate = rate
        self._cache: dict[str, bytes] = {}

    def pcm(self, name: EarconName) -> bytes | None:
        """The S16_LE mono samples of `name`, or None if it is turned off."""
        if name not in self.enabled:
            return None
        if name not in self._cache:
            self._cache[name] = dsp.tone(self._rate, _SHAPES[name])
        return self._cache[name]

    def play(self, playback: Playback, name: EarconName) -> Awaitable[bool]:
        """Queue `name` now (an acknowledgement must not wait for whatever the caller
        does next, such as setting up a session); await the result to know it played to
        the end (False if disabled or cut short by stop())."""
        pcm = self.pcm(name)
        if pcm is None:
            return _done(False)
        playback.enqueue(pcm)
        return playback.drain()


async def _done(value: bool) -> bool:
    return value
