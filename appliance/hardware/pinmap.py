"""Which GPIO pins the config uses, and how they are reached.

`describe()` renders the effective pin map (board preset merged with the user's keys)
for `appliance check`, with the physical header pin next to each BCM number so a person
can wire or verify a board without a pinout chart, and flags pins used twice.

`ensure_pin_factory()` picks gpiozero's lgpio pin factory: on Raspberry Pi OS bookworm
the RPi.GPIO factory's edge detection is broken (gpiozero#1136), and gpiozero would
silently fall back to it when lgpio is missing. `GPIOZERO_PIN_FACTORY` (e.g. `mock` for
tests) and a factory already set on `gpiozero.Device` are respected.
"""

from __future__ import annotations

import os

from appliance.config import Config

HEADER_PIN: dict[int, int] = {
    2: 3, 3: 5, 4: 7, 14: 8, 15: 10, 17: 11, 18: 12, 27: 13, 22: 15, 23: 16, 24: 18,
    10: 19, 9: 21, 25: 22, 11: 23, 8: 24, 7: 26, 0: 27, 1: 28, 5: 29, 6: 31, 12: 32,
    13: 33, 19: 35, 16: 36, 26: 37, 20: 38, 21: 40,
}  # fmt: skip
"""BCM GPIO number -> physical pin on the 40-pin header."""

SPI_PINS: dict[int, dict[str, int]] = {
    0: {"MOSI": 10, "MISO": 9, "SCLK": 11, "CE0": 8, "CE1": 7},
    1: {"MOSI": 20, "MISO": 19, "SCLK": 21, "CE0": 18, "CE1": 17, "CE2": 16},
}
"""The GPIOs an SPI bus occupies (SPI1 needs `dtoverlay=spi1-3cs`)."""


class GpioUnavailable(RuntimeError):
    """No usable gpiozero pin factory: the message says what to install or set."""


def gpio(bcm: int) -> str:
    """`GPIO 17 (pin 11)`: the BCM number people configure, and where it is on the header."""
    header = HEADER_PIN.get(bcm)
    return f"GPIO {bcm} (pin {header})" if header else f"GPIO {bcm} (not on the header)"


def used_pins(config: Config) -> list[tuple[int, str]]:
    """Every GPIO the config claims, with what uses it (SPI buses claim their pins)."""
    pins: list[tuple[int, str]] = []
    if config.button.pin is not None:
        pins.append((config.button.pin, "button"))
    leds = config.leds
    if leds.driver in ("led", "pwmled") and leds.pin is not None:
        pins.append((leds.pin, f"leds ({leds.driver})"))
    elif leds.driver == "rgbled":
        for colour, pin in (
            ("red", leds.red_pin),
            ("green", leds.green_pin),
            ("blue", leds.blue_pin),
        ):
            if pin is not None:
                pins.append((pin, f"leds ({colour})"))
    elif leds.driver == "apa102":
        bus = SPI_PINS.get(leds.spi_bus, {})
        for name in ("MOSI", "SCLK", f"CE{leds.spi_device}"):
            if name in bus:
                pins.append((bus[name], f"leds (SPI{leds.spi_bus} {name})"))
        if leds.power_pin is not None:
            pins.append((leds.power_pin, "leds (APA102 power)"))
    return pins


def conflicts(config: Config) -> list[str]:
    """One line per GPIO claimed by two parts (the second claim fails at run time)."""
    users: dict[int, list[str]] = {}
    for pin, user in used_pins(config):
        users.setdefault(pin, []).append(user)
    return [
        f"conflict: {gpio(pin)} is used by {' and '.join(names)}"
        for pin, names in sorted(users.items())
        if len(names) > 1
    ]


def describe(config: Config) -> list[str]:
    """The effective pin map as lines of text, for `appliance check`."""
    lines = [f"board: {config.board}"]
    button = config.button
    if button.pin is None:
        lines.append("button: none (use `appliance talk`)")
    else:
        wiring = "pull-up, pressed = low" if button.pull_up else "pull-down, pressed = high"
        lines.append(
            f"button: {gpio(button.pin)}, {wiring}, bounce {button.bounce_ms} ms, "
            f"hold {button.hold_s:g} s, double press {button.double_press_ms} ms"
        )
        if config.behaviour.mode == "hold":
            lines.append("  turn-taking: hold (talk while held)")
        else:
            acts = button.actions
            lines.append(
                f"  turn-taking: toggle; press -> {acts.press}, "
                f"double press -> {acts.double_press}, hold -> {acts.hold}"
            )
    lines.append(_describe_leds(config))
    camera = config.camera
    if camera.enabled:
        lines.append(
            f"camera: picamera2, {camera.mode}, at most {camera.max_fps:g} frame/s, "
            f"longest side {camera.max_size} px, JPEG quality {camera.jpeg_quality}"
        )
    else:
        lines.append("camera: disabled")
    lines.extend(conflicts(config))
    return lines


def _describe_leds(config: Config) -> str:
    leds = config.leds
    polarity = "" if leds.active_high else ", active low"
    if leds.driver == "none":
        return "leds: none"
    if leds.driver in ("led", "pwmled") and leds.pin is not None:
        return f"leds: {leds.driver} on {gpio(leds.pin)}{polarity}"
    if leds.driver == "rgbled":
        pins = ", ".join(
            f"{name} {gpio(pin)}"
            for name, pin in (
                ("red", leds.red_pin),
                ("green", leds.green_pin),
                ("blue", leds.blue_pin),
            )
            if pin is not None
        )
        return f"leds: rgbled, {pins}{polarity}"
    bus = SPI_PINS.get(leds.spi_bus, {})
    wires = ", ".join(
        f"{name} {gpio(bus[name])}"
        for name in ("MOSI", "SCLK", f"CE{leds.spi_device}")
        if name in bus
    )
    power = f", power {gpio(leds.power_pin)}" if leds.power_pin is not None else ""
    return (
        f"leds: apa102 x{leds.count} on /dev/spidev{leds.spi_bus}.{leds.spi_device} "
        f"({wires}){power}, brightness {round(leds.brightness * 100)}%"
    )


def ensure_pin_factory() -> None:
    """Make gpiozero use lgpio unless a factory was chosen already (env or tests).

    Raises GpioUnavailable with what to install when lgpio cannot be loaded.
    """
    from gpiozero import Device

    if Device.pin_factory is not None or os.environ.get("GPIOZERO_PIN_FACTORY"):
        return
    try:
        from gpiozero.pins.lgpio import LGPIOFactory

        Device.pin_factory = LGPIOFactory()
    except Exception as exc:  # ImportError, or lgpio failing to open /dev/gpiochip*
        raise GpioUnavailable(
            f"cannot use GPIO through lgpio ({exc}). On Raspberry Pi OS install it with "
            "`sudo apt install python3-lgpio` (a venv needs --system-site-packages) or "
            "`pip install lgpio`; the service user needs the `gpio` group. Off a Pi, set "
            "GPIOZERO_PIN_FACTORY=mock, or configure no [button] pin and leds.driver = 'none'."
        ) from exc
