"""A timer that fires once something has gone quiet: each `poke()` starts it again.

The daemon uses it for a reply that stops without `turnComplete` (a broken service once
left it `speaking` with a silent speaker for good): every reply chunk pokes it, the turn's
end stops it, and if it fires the turn is taken as done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class QuietTimer:
    """Calls `on_quiet()` on the event loop `seconds` after the last `poke()`."""

    def __init__(self, seconds: Callable[[], float], on_quiet: Callable[[], None]) -> None:
        self._seconds = seconds  # read at each poke: a reloaded config applies
        self._on_quiet = on_quiet
        self._handle: asyncio.TimerHandle | None = None

    def poke(self) -> None:
        self.stop()
        self._handle = asyncio.get_running_loop().call_later(self._seconds(), self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._on_quiet()
