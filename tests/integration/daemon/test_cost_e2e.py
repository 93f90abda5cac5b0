"""What conversations cost, through the real daemon, the emulator's usage metadata and
the control socket: the money in `appliance status` and the journal, and the daily limit
that turns a press into an earcon and the LEDs' `limit` look."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.audio.fakes import eventually
from appliance.daemon.control import ControlError
from appliance.live.emulator import Emulator
from tests.rig.appliance import call, control, running_appliance
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120)]

LED_PIN = 25


async def test_the_daily_limit_turns_a_press_into_a_notice_until_midnight(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    pins: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    sections: dict[str, dict[str, Any]] = {
        "cost": {"daily_limit": 0.0001},  # one typed turn of the emulator costs more
        "leds": {"driver": "led", "pin": LED_PIN},
    }
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        await call(lambda: list(control(r).ask("what time is it")))
        await r.wait_state("idle", after=1)
        status = await call(control(r).status)
        cost = status["cost"]
        assert cost["today"] > 0.0001 and cost["limit_reached"] and cost["currency"] == "USD"
        await eventually(lambda: "costing" in caplog.text)  # the journal line at the end
        states_before = list(r.states)

        await call(control(r).talk)  # refused: no conversation
        await asyncio.sleep(0.5)
        assert r.states == states_before and len(emu.connections) == 1
        assert r.app.leds is not None and r.app.leds.state == "limit"
        assert "daily limit of 0.0001 USD is reached" in caplog.text
        with pytest.raises(ControlError, match="daily limit"):
            await call(lambda: list(control(r).ask("and now?")))
        assert len(emu.connections) == 1

    # The day's spending is kept across a restart: still refused.
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        assert r.app.limit_reached()
        await call(control(r).talk)
        await asyncio.sleep(0.5)
        assert len(emu.connections) == 1
