"""GPIO pins free: every pin the config uses can be claimed, and the SPI device opens.

Each GPIO is claimed as an input through gpiozero (lgpio on a Pi: a line another program
holds fails with "GPIO busy") and released. SPI pins are not claimed: that would take
them from the SPI controller; their `/dev/spidevB.D` is opened instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from appliance.config import Config
from appliance.doctor.result import Result, failed, passed, skipped
from appliance.hardware import pinmap

Claimer = Callable[[int], None]
"""Claim and release one BCM pin; raises when it cannot be had."""


class NoGpio(Exception):
    """GPIO cannot be used at all here (no lgpio, no /dev/gpiochip access)."""


def claim_with_gpiozero(pin: int) -> None:
    from gpiozero import DigitalInputDevice

    try:
        pinmap.ensure_pin_factory()
    except pinmap.GpioUnavailable as exc:
        raise NoGpio(str(exc)) from exc
    DigitalInputDevice(pin, pull_up=None, active_state=True).close()


def check_gpio(
    cfg: Config,
    *,
    service_active: bool = False,
    claim: Claimer = claim_with_gpiozero,
    dev: Path = Path("/dev"),
) -> Result:
    pins = [(pin, user) for pin, user in pinmap.used_pins(cfg) if "SPI" not in user]
    spi = cfg.leds.driver == "apa102"
    if not pins and not spi:
        return passed("gpio", "no GPIO pins configured")
    busy: list[str] = []
    for pin, user in pins:
        try:
            claim(pin)
        except NoGpio as exc:
            if os.geteuid() != 0 and "ermission" in str(exc):
                return skipped(
                    "gpio",
                    f"cannot open the GPIO chip as you ({exc})",
                    "join the group gpio, or run `sudo appliance doctor`",
                )
            return failed("gpio", f"GPIO cannot be used: {exc}", "see the message")
        except Exception as exc:  # GPIOPinInUse, lgpio.error('GPIO busy'), ...
            busy.append(f"{pinmap.gpio(pin)} for the {user} ({exc})")
    problems: list[str] = []
    if spi:
        node = dev / f"spidev{cfg.leds.spi_bus}.{cfg.leds.spi_device}"
        try:
            os.close(os.open(node, os.O_RDWR))
        except OSError as exc:
            problems.append(f"{node} for the APA102 LEDs: {exc.strerror}")
    claimed = ", ".join(pinmap.gpio(p) for p, _ in pins) or "none"
    if busy and service_active and not problems:
        return skipped(
            "gpio",
            f"in use, by the running service: {'; '.join(busy)}",
            "to test them: sudo systemctl stop appliance first",
        )
    if busy or problems:
        fix = []
        if busy:
            fix.append(
                "find the program holding them with `gpioinfo` (package gpiod) and "
                "stop it, or choose other pins in config.toml"
            )
        if problems:
            fix.append(
                "enable SPI (`sudo raspi-config nonint do_spi 0`, or dtparam=spi=on in "
                "/boot/firmware/config.txt) and join the group spi"
            )
        return failed("gpio", "; ".join(busy + problems), "; ".join(fix))
    extra = f", /dev/spidev{cfg.leds.spi_bus}.{cfg.leds.spi_device} opens" if spi else ""
    return passed("gpio", f"free: {claimed}{extra}")
