"""Board presets: each loads, maps to its board's pins, opens on mock pins, and the pin
map `appliance check` prints says so."""

from __future__ import annotations

import asyncio

import pytest
from gpiozero.pins.mock import MockFactory

from appliance import config as cfg
from appliance.hardware import boards, pinmap
from appliance.hardware.button import Button
from appliance.hardware.leds import open_leds
from tests.rig.gpio import mock_pins
from tests.unit.test_leds import RecordingSpi

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("board", sorted(boards.PRESETS))
def test_every_preset_loads_and_describes_itself(board: str) -> None:
    config = cfg.parse(f'board = "{board}"\n')
    lines = pinmap.describe(config)
    assert lines[0] == f"board: {board}"
    assert not [line for line in lines if line.startswith("conflict")]


def test_aiy_voice_kit_v1() -> None:
    config = cfg.parse('board = "aiy-voice-v1"\n')
    assert config.button.pin == 23 and config.button.pull_up
    assert (config.leds.driver, config.leds.pin) == ("pwmled", 25)
    assert pinmap.describe(config)[1:3] == [
        "button: GPIO 23 (pin 16), pull-up, pressed = low, bounce 20 ms, hold 3 s, "
        "double press 400 ms",
        "  turn-taking: toggle; press -> talk, double press -> stop, hold -> mute",
    ]
    assert "leds: pwmled on GPIO 25 (pin 22)" in pinmap.describe(config)


def test_respeaker_2mic() -> None:
    config = cfg.parse('board = "respeaker-2mic"\n')
    assert config.button.pin == 17
    leds = config.leds
    assert (leds.driver, leds.count, leds.spi_bus, leds.spi_device, leds.power_pin) == (
        "apa102",
        3,
        0,
        1,
        12,
    )
    assert (
        "leds: apa102 x3 on /dev/spidev0.1 (MOSI GPIO 10 (pin 19), SCLK GPIO 11 (pin 23), "
        "CE1 GPIO 7 (pin 26)), power GPIO 12 (pin 32), brightness 50%"
    ) in pinmap.describe(config)


def test_custom_has_no_button_and_no_leds() -> None:
    config = cfg.parse("")
    assert config.board == "custom"
    assert pinmap.describe(config) == [
        "board: custom",
        "button: none (use `appliance talk`)",
        "leds: none",
        "camera: disabled",
    ]


def test_explicit_keys_override_the_preset() -> None:
    config = cfg.parse(
        'board = "respeaker-2mic"\n[button]\npin = 5\n[leds]\nbrightness = 0.2\npower_pin = 13\n'
    )
    assert config.button.pin == 5
    assert (config.leds.driver, config.leds.brightness, config.leds.power_pin) == (
        "apa102",
        0.2,
        13,
    )


def test_pins_used_twice_are_reported() -> None:
    config = cfg.parse('board = "respeaker-2mic"\n[button]\npin = 12\n')
    assert pinmap.conflicts(config) == [
        "conflict: GPIO 12 (pin 32) is used by button and leds (APA102 power)"
    ]
    assert pinmap.conflicts(config)[0] in pinmap.describe(config)


def test_header_map_matches_gpiozero_board_data() -> None:
    factory = MockFactory()
    for bcm, physical in pinmap.HEADER_PIN.items():
        ((header, info),) = factory.board_info.find_pin(f"GPIO{bcm}")
        assert (header.name, info.number) == ("J8", physical)


@pytest.mark.parametrize(
    ("board", "button_pin", "led_pins"),
    [("aiy-voice-v1", 23, {25}), ("respeaker-2mic", 17, {12})],
)
async def test_preset_hardware_opens_on_its_pins(
    board: str, button_pin: int, led_pins: set[int]
) -> None:
    config = cfg.parse(f'board = "{board}"\n')
    with mock_pins() as factory:
        button = Button(config.button)
        leds = open_leds(config.leds, spi=RecordingSpi())
        try:
            for _ in range(100):  # the LEDs show idle (and the APA102 supply is on)
                if all(factory.pin(p).state for p in led_pins):
                    break
                await asyncio.sleep(0.02)
            assert all(factory.pin(p).state for p in led_pins)
            assert button.pin == button_pin
            assert factory.pin(button_pin).function == "input"
            assert factory.pin(button_pin).pull == "up"
        finally:
            button.close()
            leds.close()


def test_without_lgpio_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import lgpio  # noqa: F401

        pytest.skip("lgpio is installed here")
    except ImportError:
        pass
    from gpiozero import Device

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)
    with pytest.raises(pinmap.GpioUnavailable, match="python3-lgpio"):
        pinmap.ensure_pin_factory()
    assert Device.pin_factory is None  # no silent fall back to RPi.GPIO
