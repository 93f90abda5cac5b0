"""What each state drives onto real gpiozero devices on mock pins, read back from the
pins' recorded states (values, and durations compared as ratios within one run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from appliance.config import LedPattern, LedsConfig
from appliance.hardware.leds import Leds, open_leds
from tests.rig.gpio import mock_pins
from tests.unit.test_leds import RecordingSpi

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    with mock_pins() as factory:
        yield factory


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` (a pin reaching a value); fail if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the pins never reached the expected state"
        time.sleep(0.005)


def durations(pin: MockPin) -> list[tuple[float, float]]:
    """(value, seconds held) for each completed level in the pin's history."""
    states = pin.states
    return [(states[i].state, states[i + 1].timestamp) for i in range(len(states) - 1)]


def test_pwmled_idle_is_dim_and_listening_bright(pins: MockFactory) -> None:
    leds = open_leds(LedsConfig(driver="pwmled", pin=25))
    pin = pins.pin(25)
    try:
        until(lambda: pin.state == pytest.approx(0.05))
        leds.show("listening")
        until(lambda: pin.state == 1.0)
        leds.show("muted")
        until(lambda: pin.state == pytest.approx(0.3))
    finally:
        leds.close()
    assert pin.state == 0
    assert [s.state for s in pin.states] == pytest.approx([0, 0.05, 1.0, 0.3, 0])


def blink_durations(
    pins: MockFactory, pin_no: int, state: str, edges: int
) -> list[tuple[float, float]]:
    """Show a blinking state on a PWMLED until `edges` changes, return whole half-periods."""
    states = {
        "connecting": LedPattern(pattern="blink", level=0.6, period_s=0.12),
        "error": LedPattern(pattern="blink", level=1.0, period_s=0.36),
    }
    leds = Leds(LedsConfig(driver="pwmled", pin=pin_no, states=states), initial=state)
    pin = pins.pin(pin_no)
    try:
        until(lambda: len(pin.states) >= edges)
    finally:
        leds.close()
    return durations(pin)[1:-1]  # drop the initial 0 and the level cut short by close()


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_blink_timing_follows_each_states_period(pins: MockFactory) -> None:
    error = blink_durations(pins, 25, "error", 9)
    connecting = blink_durations(pins, 26, "connecting", 13)
    assert sorted({v for v, _ in error}) == [0.0, 1.0]
    assert sorted({v for v, _ in connecting}) == pytest.approx([0.0, 0.6])
    # Half on, half off; and error's period is three times connecting's. Durations are
    # compared with each other (same run, same clock), never with the wall clock.
    on = mean([d for v, d in error if v])
    off = mean([d for v, d in error if not v])
    assert 0.6 < on / off < 1.6
    ratio = mean([d for _, d in error]) / mean([d for _, d in connecting])
    assert 2.0 < ratio < 4.5  # 3.0 on an idle machine


def test_pulse_fades_from_the_level_down_to_dark(pins: MockFactory) -> None:
    states = {"speaking": LedPattern(pattern="pulse", level=0.8, period_s=0.6)}
    leds = Leds(LedsConfig(driver="pwmled", pin=25, fps=50, states=states), initial="speaking")
    pin = pins.pin(25)
    try:
        until(lambda: 0 < pin.state < 0.05)
        until(lambda: pin.state > 0.7)
    finally:
        leds.close()
    values = [s.state for s in pin.states][1:-1]  # drop the initial 0 and the closing 0
    assert values[0] == pytest.approx(0.8, abs=0.02)
    assert max(values) <= 0.8 + 1e-9 and min(values) < 0.05
    # A fade in steps, not a blink (a starved machine draws fewer steps, never none).
    assert len({round(v, 3) for v in values if 0.1 < v < 0.7}) >= 3


def test_digital_led_blinks_on_and_off(pins: MockFactory) -> None:
    leds = open_leds(LedsConfig(driver="led", pin=25))
    pin = pins.pin(25)
    try:
        until(lambda: pin.state)  # idle: on (an on/off LED cannot be dim)
        leds.show("error")  # blink, 0.4 s
        until(lambda: len(pin.states) >= 5)
    finally:
        leds.close()
    assert [s.state for s in pin.states][:5] == [False, True, False, True, False]


def test_rgbled_error_is_red(pins: MockFactory) -> None:
    leds = open_leds(LedsConfig(driver="rgbled", red_pin=5, green_pin=6, blue_pin=13))
    red, green, blue = pins.pin(5), pins.pin(6), pins.pin(13)
    try:
        leds.show("error")
        until(lambda: red.state == 1.0 and green.state == 0 and blue.state == 0)
        until(lambda: red.state == 0)  # and it blinks
        leds.show("listening")  # #0080ff
        until(lambda: blue.state == 1.0)
        assert red.state == 0 and green.state == pytest.approx(128 / 255)
    finally:
        leds.close()
    assert (red.state, green.state, blue.state) == (0, 0, 0)


def test_apa102_powers_up_writes_the_state_and_powers_down(pins: MockFactory) -> None:
    spi = RecordingSpi()
    config = LedsConfig(driver="apa102", count=3, power_pin=12, brightness=1.0)
    leds = open_leds(config, spi=spi)
    power = pins.pin(12)
    try:
        until(lambda: len(spi.writes) >= 1)
        assert power.state
        # idle: white at level 0.05 -> 13/255 on every channel, full 5-bit brightness
        assert spi.writes[0] == bytes(4) + bytes([0xFF, 13, 13, 13]) * 3 + bytes(4)
        leds.show("listening")
        leds.camera_active(True)
        until(lambda: spi.writes[-1][4:8] == bytes([0xFF, 0xFF, 0x80, 0x00]))
        until(lambda: spi.writes[-1][12:16] == bytes([0xFF, 0x80, 0x00, 0x80]))  # camera
    finally:
        leds.close()
    assert spi.writes[-1] == bytes(4) + bytes([0xFF, 0, 0, 0]) * 3 + bytes(4)
    assert spi.closed and not power.state


def test_driver_none_needs_no_pins_and_no_thread() -> None:
    leds = open_leds(LedsConfig())
    leds.show("speaking")
    leds.close()
    assert leds.frames == 0


def test_close_twice_is_harmless(pins: MockFactory) -> None:
    leds = open_leds(LedsConfig(driver="pwmled", pin=25))
    leds.close()
    leds.close()
    assert pins.pin(25).state == 0
