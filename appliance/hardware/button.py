"""One push button on a GPIO pin, turned into gestures and actions for the daemon.

gpiozero reads the pin (its callbacks run in gpiozero's own threads); each edge is
stamped and handed to the asyncio loop with `call_soon_threadsafe`. Everything after
that, debouncing, hold and double-press timing, runs on the loop as plain logic in
`GestureRecognizer`, so it behaves the same on mock pins and on a Pi and needs no locks.

Debouncing is done here rather than by the pin factory: gpiozero's mock pins ignore
`bounce_time`, and one implementation means one behaviour to test. A level counts once
it has been stable for `bounce_ms` (like lgpio's debounce), so a short spike of noise
never becomes a press.

Events, in order, for every press:
- `down` / `up`: the debounced edges, at once (action `none`). In `hold` turn-taking
  mode these are the only events: the daemon talks while the button is down.
- In `toggle` mode, one of `press`, `double_press` or `hold`, carrying the configured
  action. A double press never also yields a `press`; a hold never yields a `press`.

When a press is decided, to keep `talk` quick:
- no double-press and no hold action configured: `press` fires on the way down;
- only a hold action: `press` fires on release (before `hold_s`);
- a double-press action: `press` fires `double_press_ms` after the first press went
  down (or on release, if that is later). A second press inside that window is a
  `double_press`, fired as it goes down (the rest of that second press yields nothing
  more, not even a hold). The daemon may use `down` to warm up (open the
  Live session) before the action is decided; nothing is sent until it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from appliance.config import ButtonAction, ButtonConfig

TurnMode = Literal["toggle", "hold"]


class Gesture(enum.StrEnum):
    """What the hand did."""

    DOWN = "down"
    UP = "up"
    PRESS = "press"
    DOUBLE_PRESS = "double_press"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """One gesture and the action the config gives it (`none` for `down`/`up`)."""

    gesture: Gesture
    action: ButtonAction
    at: float
    """`time.monotonic()` of the edge that decided it (also the asyncio loop's clock)."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The part of an asyncio loop the recognizer needs (a fake clock in unit tests)."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], object], /) -> Cancellable: ...


class GestureRecognizer:
    """Debounced edges -> gestures and actions. Not thread-safe: call on one thread."""

    def __init__(
        self,
        config: ButtonConfig,
        scheduler: Scheduler,
        emit: Callable[[ButtonEvent], None],
        *,
        mode: TurnMode = "toggle",
        pressed: bool = False,
    ) -> None:
        self._config = config
        self._actions = config.actions
        self._scheduler = scheduler
        self._emit = emit
        self._mode = mode
        self._raw = pressed
        self._raw_at = scheduler.time()
        self._stable = pressed
        self._settle_timer: Cancellable | None = None
        self._hold_timer: Cancellable | None = None
        self._single_timer: Cancellable | None = None
        self._first_down = 0.0
        self._done = True  # this press has produced its gesture already
        self._pending_single = False

    @property
    def pressed(self) -> bool:
        """The debounced state."""
        return self._stable

    def edge(self, pressed: bool, at: float | None = None) -> None:
        """The raw pin changed to `pressed` at monotonic time `at` (default: now)."""
        now = self._scheduler.time()
        at = now if at is None else at
        if pressed == self._raw:
            return
        self._raw, self._raw_at = pressed, at
        _cancel(self._settle_timer)
        # Always through the loop, even when the edge is already old: edges stamped
        # earlier are queued ahead of this timer and get to cancel it (a lagging loop
        # must not turn stale noise into a press).
        delay = self._config.bounce_ms / 1000 - (now - at)
        self._settle_timer = self._scheduler.call_later(max(0.0, delay), self._settle)

    def close(self) -> None:
        """Cancel pending timers; nothing is emitted afterwards."""
        for timer in (self._settle_timer, self._hold_timer, self._single_timer):
            _cancel(timer)
        self._emit = _discard

    def _settle(self) -> None:
        self._settle_timer = None
        if self._raw == self._stable:
            return  # noise that came back to where it was
        self._stable = self._raw
        if self._stable:
            self._on_down(self._raw_at)
        else:
            self._on_up(self._raw_at)

    def _fire(self, gesture: Gesture, action: ButtonAction, at: float) -> None:
        self._emit(ButtonEvent(gesture, action, at))

    def _on_down(self, at: float) -> None:
        self._fire(Gesture.DOWN, "none", at)
        if self._mode == "hold":
            return
        if self._pending_single:
            self._pending_single = False
            _cancel(self._single_timer)
            self._done = True
            self._fire(Gesture.DOUBLE_PRESS, self._actions.double_press, at)
            return
        self._first_down = at
        self._done = False
        if self._actions.hold != "none":
            delay = self._config.hold_s - (self._scheduler.time() - at)
            self._hold_timer = self._scheduler.call_later(max(0.0, delay), self._on_hold)
        elif self._actions.double_press == "none":
            self._done = True
            self._fire(Gesture.PRESS, self._actions.press, at)

    def _on_hold(self) -> None:
        self._hold_timer = None
        if self._stable and not self._done:
            self._done = True
            self._fire(Gesture.HOLD, self._actions.hold, self._first_down + self._config.hold_s)

    def _on_up(self, at: float) -> None:
        self._fire(Gesture.UP, "none", at)
        if self._mode == "hold":
            return
        _cancel(self._hold_timer)
        self._hold_timer = None
        if self._done:
            return
        self._done = True
        window_end = self._first_down + self._config.double_press_ms / 1000
        remaining = window_end - self._scheduler.time()
        if self._actions.double_press == "none" or remaining <= 0:
            self._fire(Gesture.PRESS, self._actions.press, at)
            return
        self._pending_single = True
        self._single_timer = self._scheduler.call_later(remaining, self._on_single)

    def _on_single(self) -> None:
        self._single_timer = None
        if self._pending_single:
            self._pending_single = False
            window_end = self._first_down + self._config.double_press_ms / 1000
            self._fire(Gesture.PRESS, self._actions.press, window_end)


def _cancel(timer: Cancellable | None) -> None:
    if timer is not None:
        timer.cancel()


def _discard(event: ButtonEvent) -> None:
    return None


class Button:
    """A gpiozero button whose gestures arrive on the asyncio loop.

    Create it on the loop's thread (inside a coroutine). Read events with
    `await button.get()` or `async for event in button`, or pass `on_event`, which is
    called on the loop thread for each event (then the queue is not filled).
    """

    def __init__(
        self,
        config: ButtonConfig,
        *,
        mode: TurnMode = "toggle",
        on_event: Callable[[ButtonEvent], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if config.pin is None:
            raise ValueError("button.pin is not set: there is no button to open")
        from gpiozero import Button as GpioButton

        from appliance.hardware.pinmap import ensure_pin_factory

        ensure_pin_factory()
        self._loop = loop or asyncio.get_running_loop()
        self._queue: asyncio.Queue[ButtonEvent] = asyncio.Queue()
        self._on_event = on_event
        self._device: Any = GpioButton(config.pin, pull_up=config.pull_up, bounce_time=None)
        self._recognizer = GestureRecognizer(
            config, self._loop, self._deliver, mode=mode, pressed=bool(self._device.is_pressed)
        )
        self._device.when_pressed = self._pressed
        self._device.when_released = self._released

    @property
    def pin(self) -> int:
        return int(self._device.pin.info.name.removeprefix("GPIO"))

    def _pressed(self) -> None:  # gpiozero's thread
        self._from_thread(True)

    def _released(self) -> None:  # gpiozero's thread
        self._from_thread(False)

    def _from_thread(self, pressed: bool) -> None:
        at = time.monotonic()
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(self._recognizer.edge, pressed, at)

    def _deliver(self, event: ButtonEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
        else:
            self._queue.put_nowait(event)

    async def get(self) -> ButtonEvent:
        """The next event."""
        return await self._queue.get()

    def drain(self) -> list[ButtonEvent]:
        """The events waiting in the queue, removed without waiting (e.g. presses made
        while the daemon was busy starting, which it may choose to ignore)."""
        events = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    def __aiter__(self) -> Button:
        return self

    async def __anext__(self) -> ButtonEvent:
        return await self._queue.get()

    def close(self) -> None:
        """Release the pin; pending gestures are dropped. Safe to call twice."""
        if self._device.closed:
            return
        self._device.when_pressed = None
        self._device.when_released = None
        self._device.close()
        self._recognizer.close()


def open_button(
    config: ButtonConfig,
    *,
    mode: TurnMode = "toggle",
    on_event: Callable[[ButtonEvent], None] | None = None,
) -> Button | None:
    """The configured button, or None when `[button] pin` is unset (a valid setup)."""
    if config.pin is None:
        return None
    return Button(config, mode=mode, on_event=on_event)
