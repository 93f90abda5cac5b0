"""The LEDs: each state's pattern, animated on a background thread, shown by a driver.

`Leds.show(state)` and `Leds.camera_active()` only record what to show and wake the
animation thread, so they never block the asyncio loop; the thread draws the new look at
once (the next frame is always the new state) and then sleeps until the look changes
(the next blink edge, the next pulse frame at `fps`, or never for a steady light).

One animation engine for every driver keeps the patterns identical everywhere (blink
and pulse honour `level`, which gpiozero's own PWMLED.blink/pulse do not). Drivers are
dumb sinks for one frame of `Shade`s:
- `led`: on/off, lit in the on half of a blink or pulse; colour and level ignored.
- `pwmled`: brightness = level x waveform; colour ignored (one colour of LED).
- `rgbled`: colour x level x waveform on three PWM pins.
- `apa102`: a strip or ring over SPI (ReSpeaker 2-mic HAT: 3 LEDs on SPI 0.1, supply
  switched by GPIO 12); `brightness` is the chip's 5-bit global brightness.

The camera overlay (frames are being taken) is drawn on the last LED of a strip, so the
conversation state stays visible; a single LED shows the camera pattern instead of the
state while it is on: for privacy the camera wins.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.config import LED_STATES, LedPattern, LedsConfig

RGB = tuple[float, float, float]
_log = logging.getLogger(__name__)
OFF_PATTERN = LedPattern(pattern="off")


@dataclass(frozen=True, slots=True)
class Shade:
    """What one LED shows in one frame."""

    colour: RGB
    """The pattern's colour, channels 0..1, at full level."""
    level: float
    """Brightness now: the pattern's level times its waveform, 0..1."""
    lit: bool
    """For on/off LEDs: the pattern is in its bright half."""

    def rgb(self) -> RGB:
        """The colour scaled to the current level."""
        r, g, b = self.colour
        return (r * self.level, g * self.level, b * self.level)


DARK = Shade((0.0, 0.0, 0.0), 0.0, False)


def parse_colour(text: str) -> RGB:
    """`#rrggbb` -> channels 0..1."""
    value = int(text.removeprefix("#"), 16)
    return ((value >> 16 & 0xFF) / 255, (value >> 8 & 0xFF) / 255, (value & 0xFF) / 255)


def waveform(pattern: LedPattern, elapsed: float) -> float:
    """0..1 at `elapsed` seconds into the pattern. Blink and pulse start bright, so a
    new state is visible in its first frame."""
    kind = pattern.pattern
    if kind == "off":
        return 0.0
    if kind == "on":
        return 1.0
    phase = (elapsed % pattern.period_s) / pattern.period_s
    if kind == "blink":
        return 1.0 if phase < 0.5 else 0.0
    return 0.5 + 0.5 * math.cos(2 * math.pi * phase)  # pulse


def shade(pattern: LedPattern, elapsed: float) -> Shade:
    """The look of `pattern` at `elapsed` seconds."""
    wave = waveform(pattern, elapsed)
    return Shade(
        parse_colour(pattern.colour), pattern.level * wave, pattern.level > 0 and wave >= 0.5
    )


def next_change(pattern: LedPattern, elapsed: float, fps: int) -> float | None:
    """Seconds until the look of `pattern` changes; None when it never does."""
    if pattern.pattern in ("off", "on"):
        return None
    if pattern.pattern == "blink":
        half = pattern.period_s / 2
        return half - (elapsed % half)
    return 1.0 / fps


class LedDriver(Protocol):
    """Shows one frame: a shade per LED (`count` of them)."""

    count: int

    def render(self, shades: Sequence[Shade]) -> None: ...

    def close(self) -> None: ...


class NoLeds:
    """`driver = "none"`: a board without LEDs."""

    count = 1

    def render(self, shades: Sequence[Shade]) -> None:
        return None

    def close(self) -> None:
        return None


class GpioLed:
    """One LED on a GPIO pin through gpiozero: `LED` (on/off) or `PWMLED` (dimmable)."""

    count = 1

    def __init__(self, pin: int, *, pwm: bool, active_high: bool = True) -> None:
        from gpiozero import LED, PWMLED

        from appliance.hardware.pinmap import ensure_pin_factory

        ensure_pin_factory()
        self._pwm = pwm
        self._device: Any = (
            PWMLED(pin, active_high=active_high) if pwm else LED(pin, active_high=active_high)
        )

    def render(self, shades: Sequence[Shade]) -> None:
        first = shades[0]
        value = first.level if self._pwm else float(first.lit)
        if self._device.value != value:
            self._device.value = value

    def close(self) -> None:
        self._device.close()


class GpioRgbLed:
    """One RGB LED on three PWM pins through gpiozero's `RGBLED`."""

    count = 1

    def __init__(self, red: int, green: int, blue: int, *, active_high: bool = True) -> None:
        from gpiozero import RGBLED

        from appliance.hardware.pinmap import ensure_pin_factory

        ensure_pin_factory()
        self._device: Any = RGBLED(red, green, blue, active_high=active_high)

    def render(self, shades: Sequence[Shade]) -> None:
        value = shades[0].rgb()
        if tuple(self._device.value) != value:
            self._device.value = value

    def close(self) -> None:
        self._device.close()


class SpiBus(Protocol):
    """Somewhere to write SPI bytes (spidev on a Pi; a recorder in tests)."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class SpidevBus:
    """`/dev/spidevB.D` through the spidev package, opened on first write."""

    def __init__(self, bus: int, device: int, *, speed_hz: int = 8_000_000) -> None:
        self.bus, self.device, self.speed_hz = bus, device, speed_hz
        self._spi: Any = None

    def _open(self) -> Any:
        path = f"/dev/spidev{self.bus}.{self.device}"
        try:
            import spidev
        except ImportError as exc:
            raise RuntimeError(
                "leds.driver = 'apa102' needs the spidev package: `pip install spidev` "
                "(or `sudo apt install python3-spidev` with a --system-site-packages venv)"
            ) from exc
        spi = spidev.SpiDev()
        try:
            spi.open(self.bus, self.device)
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"{path} does not exist: enable SPI (`sudo raspi-config nonint do_spi 0`, "
                "or dtparam=spi=on in /boot/firmware/config.txt) and reboot, or fix "
                "leds.spi_bus / leds.spi_device"
            ) from exc
        except PermissionError as exc:
            raise RuntimeError(
                f"{path}: permission denied; add the service user to the spi group"
            ) from exc
        spi.max_speed_hz = self.speed_hz
        spi.mode = 0
        return spi

    def write(self, data: bytes) -> None:
        if self._spi is None:
            self._spi = self._open()
        self._spi.writebytes2(data)

    def close(self) -> None:
        if self._spi is not None:
            self._spi.close()
            self._spi = None


def apa102_frame(pixels: Sequence[RGB], brightness: float) -> bytes:
    """The SPI bytes for a strip: start frame 4 x 0x00, per LED 0xE0|brightness (5 bit),
    blue, green, red, then an end frame of zeros long enough to clock the last LED's
    data through (at least 4 bytes, and one byte per 16 LEDs)."""
    global_brightness = 0xE0 | round(brightness * 31)
    out = bytearray(4)
    for r, g, b in pixels:
        out += bytes((global_brightness, round(b * 255), round(g * 255), round(r * 255)))
    out += bytes(max(4, math.ceil(len(pixels) / 16)))
    return bytes(out)


class Apa102:
    """A strip or ring of APA102 LEDs, with an optional GPIO that powers it."""

    def __init__(
        self, spi: SpiBus, count: int, *, brightness: float, power_pin: int | None = None
    ) -> None:
        self.count = count
        self._spi = spi
        self._brightness = brightness
        self._last: bytes | None = None
        self._power: Any = None
        if power_pin is not None:
            from gpiozero import DigitalOutputDevice

            from appliance.hardware.pinmap import ensure_pin_factory

            ensure_pin_factory()
            self._power = DigitalOutputDevice(power_pin, initial_value=True)

    def render(self, shades: Sequence[Shade]) -> None:
        frame = apa102_frame([s.rgb() for s in shades], self._brightness)
        if frame != self._last:
            self._spi.write(frame)
            self._last = frame

    def close(self) -> None:
        try:
            self.render([DARK] * self.count)
            self._spi.close()
        finally:
            if self._power is not None:
                self._power.off()
                self._power.close()


def build_driver(config: LedsConfig, *, spi: SpiBus | None = None) -> LedDriver:
    """The driver `[leds]` asks for; `spi` replaces spidev (tests)."""
    if config.driver == "none":
        return NoLeds()
    if config.driver in ("led", "pwmled"):
        assert config.pin is not None  # checked by LedsConfig
        return GpioLed(config.pin, pwm=config.driver == "pwmled", active_high=config.active_high)
    if config.driver == "rgbled":
        assert None not in (config.red_pin, config.green_pin, config.blue_pin)
        return GpioRgbLed(
            config.red_pin,  # type: ignore[arg-type]
            config.green_pin,  # type: ignore[arg-type]
            config.blue_pin,  # type: ignore[arg-type]
            active_high=config.active_high,
        )
    return Apa102(
        spi or SpidevBus(config.spi_bus, config.spi_device),
        config.count,
        brightness=config.brightness,
        power_pin=config.power_pin,
    )


class Leds:
    """The state shown on the LEDs. Call from any thread; nothing here blocks for long."""

    def __init__(
        self,
        config: LedsConfig,
        driver: LedDriver | None = None,
        *,
        initial: str = "idle",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._driver = driver if driver is not None else build_driver(config)
        self._clock = clock
        self._cond = threading.Condition()
        self._state = self._check(initial)
        self._since = clock()
        self._camera_since: float | None = None
        self._closed = False
        self.frames = 0
        """Frames drawn so far (a clock for tests: a switch shows in the next frame)."""
        self._thread: threading.Thread | None = None
        if not isinstance(self._driver, NoLeds):
            self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
            self._thread.start()

    @property
    def state(self) -> str:
        return self._state

    @staticmethod
    def _check(state: str) -> str:
        if state not in LED_STATES or state == "camera":
            raise ValueError(f"unknown LED state {state!r}; allowed: {', '.join(LED_STATES[:-1])}")
        return state

    def show(self, state: str) -> None:
        """Switch to `state` (one of `LED_STATES` except `camera`); a blink or pulse
        restarts from its bright phase. Showing the current state again changes nothing."""
        self._check(state)
        with self._cond:
            if state != self._state:
                self._state, self._since = state, self._clock()
                self._cond.notify()

    def camera_active(self, active: bool) -> None:
        """Show (or stop showing) that camera frames are being taken."""
        with self._cond:
            if active != (self._camera_since is not None):
                self._camera_since = self._clock() if active else None
                self._cond.notify()

    def compose(self, now: float) -> tuple[list[Shade], float | None]:
        """The frame to draw at `now` and the seconds until it changes (None: never)."""
        patterns = self._config.states
        state_pattern = patterns.get(self._state, OFF_PATTERN)
        count = self._driver.count
        elapsed = now - self._since
        frame = [shade(state_pattern, elapsed)] * count
        wait = next_change(state_pattern, elapsed, self._config.fps)
        if self._camera_since is not None:
            cam_pattern = patterns.get("camera", OFF_PATTERN)
            cam_elapsed = now - self._camera_since
            cam = shade(cam_pattern, cam_elapsed)
            if count >= 2:
                frame[-1] = cam
            else:
                frame = [cam]
                wait = None
            cam_wait = next_change(cam_pattern, cam_elapsed, self._config.fps)
            if cam_wait is not None:
                wait = cam_wait if wait is None else min(wait, cam_wait)
        return frame, wait

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                frame, wait = self.compose(self._clock())
                try:
                    self._driver.render(frame)
                except Exception:  # a failing LED must never take the speaker down
                    _log.exception("LED driver failed; LEDs stop")
                    return
                self.frames += 1
                # Sleep until the look changes or show() notifies; the lock is released
                # while waiting, and show() holds it only to swap the state.
                self._cond.wait(timeout=None if wait is None else max(wait, 0.001))

    def close(self) -> None:
        """Stop animating, turn the LEDs off and release their pins / SPI device."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._driver.render([DARK] * self._driver.count)
        finally:
            self._driver.close()


def open_leds(config: LedsConfig, *, spi: SpiBus | None = None) -> Leds:
    """The LEDs `[leds]` describes, showing `idle` (driver `none`: does nothing)."""
    return Leds(config, build_driver(config, spi=spi))
