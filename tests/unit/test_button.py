"""The Button through real gpiozero: MockFactory pins driven from another thread with real
timing (as gpiozero's own callback threads would), events read on the asyncio loop.

Timing margins are wide (bounce 60 ms against noise of microseconds, presses of 150 ms
against a 600 ms double-press window) so a busy shared machine cannot change the outcome;
no assertion is made on how long anything took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from gpiozero.pins.mock import MockPin

from appliance.config import ButtonActions, ButtonConfig
from appliance.hardware.button import Button, ButtonEvent, Gesture, open_button
from tests.rig.gpio import mock_pins

pytestmark = pytest.mark.timeout(20)

CONFIG = ButtonConfig(pin=17, bounce_ms=60, hold_s=0.5, double_press_ms=600)


@pytest.fixture
async def button() -> AsyncIterator[tuple[Button, MockPin]]:
    with mock_pins() as factory:
        btn = Button(CONFIG)
        try:
            yield btn, factory.pin(17)
        finally:
            btn.close()


async def drive(pin: MockPin, script: Callable[[MockPin], None]) -> None:
    """Run a pin script on a worker thread, like gpiozero's edge callbacks."""
    await asyncio.to_thread(script, pin)


async def collect_until(btn: Button, gesture: Gesture, quiet: float) -> list[ButtonEvent]:
    """Events up to and including `gesture`, then any that arrive within `quiet` s."""
    events = [await asyncio.wait_for(btn.get(), 10)]
    while events[-1].gesture != gesture:
        events.append(await asyncio.wait_for(btn.get(), 10))
    await asyncio.sleep(quiet)
    events.extend(btn.drain())
    return events


def kinds(events: list[ButtonEvent]) -> list[tuple[str, str]]:
    return [(e.gesture.value, e.action) for e in events]


def click(pin: MockPin, duration: float = 0.15) -> None:
    pin.drive_low()  # pulled up: pressed connects the pin to ground
    time.sleep(duration)
    pin.drive_high()


async def test_press_gives_one_press(button: tuple[Button, MockPin]) -> None:
    btn, pin = button
    await drive(pin, click)
    events = await collect_until(btn, Gesture.PRESS, quiet=0.8)
    assert kinds(events) == [("down", "none"), ("up", "none"), ("press", "talk")]


async def test_bounce_noise_is_filtered(button: tuple[Button, MockPin]) -> None:
    btn, pin = button

    def bouncy(pin: MockPin) -> None:
        for _ in range(5):
            pin.drive_low()
            pin.drive_high()
        pin.drive_low()
        time.sleep(0.15)
        for _ in range(5):
            pin.drive_high()
            pin.drive_low()
        pin.drive_high()

    await drive(pin, bouncy)
    events = await collect_until(btn, Gesture.PRESS, quiet=0.8)
    assert kinds(events) == [("down", "none"), ("up", "none"), ("press", "talk")]


async def test_hold_gives_one_hold(button: tuple[Button, MockPin]) -> None:
    btn, pin = button
    await drive(pin, lambda p: click(p, 0.9))
    events = await collect_until(btn, Gesture.UP, quiet=0.8)
    assert kinds(events) == [("down", "none"), ("hold", "mute"), ("up", "none")]


async def test_double_press_gives_one_double_press(button: tuple[Button, MockPin]) -> None:
    btn, pin = button

    def twice(pin: MockPin) -> None:
        click(pin, 0.1)
        time.sleep(0.1)
        click(pin, 0.1)

    await drive(pin, twice)
    events = await collect_until(btn, Gesture.DOUBLE_PRESS, quiet=0.9)
    assert kinds(events) == [
        ("down", "none"),
        ("up", "none"),
        ("down", "none"),
        ("double_press", "stop"),
        ("up", "none"),
    ]


async def test_pull_down_wiring_and_callback_delivery() -> None:
    seen: list[ButtonEvent] = []
    config = ButtonConfig(
        pin=23, pull_up=False, bounce_ms=10, actions=ButtonActions(double_press="none", hold="none")
    )
    with mock_pins() as factory:
        btn = open_button(config, on_event=seen.append)
        assert btn is not None
        try:
            pin = factory.pin(23)
            await drive(pin, lambda p: p.drive_high())  # pull-down: pressed = high
            for _ in range(200):
                if len(seen) >= 2:
                    break
                await asyncio.sleep(0.02)
            assert kinds(seen) == [("down", "none"), ("press", "talk")]
        finally:
            btn.close()


def test_no_pin_means_no_button() -> None:
    assert open_button(ButtonConfig()) is None


async def test_noise_handled_late_by_a_busy_loop_is_still_filtered(
    button: tuple[Button, MockPin],
) -> None:
    btn, pin = button
    pin.drive_low()  # a 0 ms spike; the callbacks are queued onto the loop...
    pin.drive_high()
    time.sleep(0.2)  # noqa: ASYNC251 ...which is busy for longer than the bounce time before it sees them
    await asyncio.sleep(0.3)
    assert btn.drain() == []


async def test_close_twice_is_harmless() -> None:
    with mock_pins() as factory:
        btn = Button(CONFIG)
        btn.close()
        btn.close()
        factory.pin(17).drive_low()  # released: nothing is delivered any more
        await asyncio.sleep(0.1)
        assert btn.drain() == []
