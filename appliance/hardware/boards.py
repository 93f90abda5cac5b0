"""Presets for the boards people own: `board = "NAME"` in config.toml.

A preset is a fragment of config.toml, merged *under* the user's file, so any key the
user writes overrides the preset's. Plain data, no imports: loading the config must not
pull in GPIO libraries.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Wire everything yourself in [button] and [leds].
    "custom": {},
    # Google AIY Voice Kit v1 (Voice HAT): arcade button on GPIO 23, its LED on GPIO 25.
    "aiy-voice-v1": {
        "button": {"pin": 23, "pull_up": True},
        "leds": {"driver": "pwmled", "pin": 25},
    },
    # ReSpeaker / Seeed 2-Mics Pi HAT: button on GPIO 17, three APA102 LEDs on SPI 0.1
    # whose supply is switched on by GPIO 12; WM8960 codec with two microphones.
    "respeaker-2mic": {
        "button": {"pin": 17, "pull_up": True},
        "leds": {
            "driver": "apa102",
            "count": 3,
            "spi_bus": 0,
            "spi_device": 1,
            "power_pin": 12,
        },
        "audio": {
            "capture_device": "plughw:CARD=seeed2micvoicec,DEV=0",
            "playback_device": "plughw:CARD=seeed2micvoicec,DEV=0",
            "capture_channels": 2,
            "capture_channel": 0,
            "mixer": "Speaker",
            "mixer_card": "seeed2micvoicec",
        },
    },
}
