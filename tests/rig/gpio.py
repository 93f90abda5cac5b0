"""GPIO rig: gpiozero's MockFactory set up for a test, and a virtual clock for timers.

`mock_pins()` installs `MockFactory(pin_class=MockPWMPin)` as gpiozero's pin factory
(PWM-capable, so PWMLED and RGBLED work) and restores the previous one afterwards.
`VirtualScheduler` is a stand-in for the asyncio loop's `time()`/`call_later()`: time
only moves when a test calls `advance()`, so gesture timing is exact and deterministic.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin


@contextmanager
def mock_pins() -> Iterator[MockFactory]:
    """A fresh mock pin factory for the duration of the block."""
    previous = Device.pin_factory
    factory = MockFactory(pin_class=MockPWMPin)
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], Any] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class VirtualScheduler:
    """`time()` and `call_later()` on a clock that moves only by `advance()`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], Any], /) -> _Timer:
        timer = _Timer(self.now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move the clock forward, running due timers in order at their own times."""
        end = self.now + seconds
        while self._timers and self._timers[0].when <= end:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = end
