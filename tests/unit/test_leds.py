"""LED patterns as plain functions, the APA102 wire format, and how frames are composed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from appliance.config import LedPattern, LedsConfig
from appliance.hardware.leds import (
    Apa102,
    Leds,
    Shade,
    apa102_frame,
    next_change,
    parse_colour,
    shade,
    waveform,
)


class RecordingSpi:
    """A fake SPI device: keeps every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True


class RecordingDriver:
    """A fake LED driver: keeps every frame, and signals each one."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.frames: list[list[Shade]] = []
        self.drawn = threading.Condition()

    def render(self, shades: Sequence[Shade]) -> None:
        with self.drawn:
            self.frames.append(list(shades))
            self.drawn.notify_all()

    def close(self) -> None:
        return None

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        with self.drawn:
            assert self.drawn.wait_for(lambda: len(self.frames) >= n, timeout), "no frame drawn"


def test_parse_colour() -> None:
    assert parse_colour("#ff8000") == (1.0, 128 / 255, 0.0)


def test_waveforms_start_bright_and_follow_the_period() -> None:
    blink = LedPattern(pattern="blink", period_s=0.4)
    assert [waveform(blink, t) for t in (0.0, 0.19, 0.21, 0.39, 0.41)] == [1, 1, 0, 0, 1]
    pulse = LedPattern(pattern="pulse", period_s=1.0)
    assert waveform(pulse, 0.0) == pytest.approx(1.0)
    assert waveform(pulse, 0.25) == pytest.approx(0.5)
    assert waveform(pulse, 0.5) == pytest.approx(0.0)
    assert waveform(LedPattern(pattern="on"), 7.0) == 1.0
    assert waveform(LedPattern(pattern="off"), 0.0) == 0.0


def test_shade_scales_by_level_and_is_lit_in_the_bright_half() -> None:
    dim = shade(LedPattern(pattern="on", colour="#ffffff", level=0.05), 0.0)
    assert dim.level == pytest.approx(0.05) and dim.lit
    pulse = LedPattern(pattern="pulse", colour="#00ff40", level=0.8, period_s=1.0)
    assert shade(pulse, 0.1).lit and not shade(pulse, 0.5).lit
    assert shade(pulse, 0.0).rgb() == pytest.approx((0.0, 0.8, 0.8 * 64 / 255))
    assert not shade(LedPattern(pattern="on", level=0.0), 0.0).lit


def test_next_change_wakes_at_blink_edges_and_every_pulse_frame() -> None:
    assert next_change(LedPattern(pattern="on"), 3.0, 30) is None
    assert next_change(LedPattern(pattern="blink", period_s=1.0), 0.2, 30) == pytest.approx(0.3)
    assert next_change(LedPattern(pattern="pulse"), 0.2, 25) == pytest.approx(0.04)


def test_apa102_bytes_for_a_colour_and_brightness() -> None:
    frame = apa102_frame([(1.0, 128 / 255, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)], 0.5)
    assert frame == bytes(
        [0x00] * 4
        + [0xE0 | 16, 0x00, 0x80, 0xFF]  # orange: blue, green, red
        + [0xE0 | 16, 0xFF, 0x00, 0x00]  # blue
        + [0xE0 | 16, 0x00, 0x00, 0x00]
        + [0x00] * 4
    )
    assert apa102_frame([(1.0, 1.0, 1.0)], 1.0)[4:8] == bytes([0xFF, 0xFF, 0xFF, 0xFF])
    assert apa102_frame([(0.0, 0.0, 0.0)] * 100, 0.0)[-8:] == bytes(8)
    assert len(apa102_frame([(0.0, 0.0, 0.0)] * 100, 0.0)) == 4 + 400 + 7


def test_apa102_driver_writes_only_changes_and_blanks_on_close() -> None:
    spi = RecordingSpi()
    strip = Apa102(spi, 3, brightness=1.0)
    red = Shade((1.0, 0.0, 0.0), 0.5, True)
    strip.render([red] * 3)
    strip.render([red] * 3)
    strip.close()
    assert spi.writes == [
        bytes(4) + bytes([0xFF, 0, 0, 128]) * 3 + bytes(4),
        bytes(4) + bytes([0xFF, 0, 0, 0]) * 3 + bytes(4),
    ]
    assert spi.closed


def test_camera_overlay_takes_the_last_led_of_a_strip_and_a_single_led_whole() -> None:
    config = LedsConfig(driver="none")
    strip = Leds(config, RecordingDriver(count=3), initial="listening", clock=lambda: 0.0)
    single = Leds(config, RecordingDriver(count=1), initial="listening", clock=lambda: 0.0)
    try:
        for leds in (strip, single):
            leds.camera_active(True)
        listening = parse_colour("#0080ff")
        camera = Shade(parse_colour("#ff00ff"), 0.5, True)
        frame, _ = strip.compose(0.0)
        assert [s.colour for s in frame[:2]] == [listening] * 2 and frame[2] == camera
        assert single.compose(0.0)[0] == [camera]
        single.camera_active(False)
        assert single.compose(0.0)[0][0].colour == listening
    finally:
        strip.close()
        single.close()


@pytest.mark.timeout(20)
def test_show_switches_in_the_next_frame() -> None:
    driver = RecordingDriver(count=3)
    leds = Leds(LedsConfig(driver="none"), driver)  # idle: steady, the thread sleeps
    states = LedsConfig().states
    try:
        driver.wait_for(1)
        for state in ("listening", "idle", "error", "idle", "speaking", "muted"):
            leds.show(state)
            n = len(driver.frames)
            # From a steady state no timer is due: only show() can wake the thread, and
            # the frame it draws is already the new state, at the start of its pattern.
            driver.wait_for(n + 1)
            first = driver.frames[n][0]
            assert first.colour == parse_colour(states[state].colour)
            assert first.lit
            assert first.level == pytest.approx(states[state].level, abs=0.1)
            assert leds.state == state
    finally:
        leds.close()
    assert driver.frames[-1] == [Shade((0.0, 0.0, 0.0), 0.0, False)] * 3


def test_unknown_state_is_refused_with_the_allowed_ones() -> None:
    leds = Leds(LedsConfig(), RecordingDriver())
    try:
        with pytest.raises(ValueError, match="allowed: idle, connecting"):
            leds.show("sleeping")
    finally:
        leds.close()
