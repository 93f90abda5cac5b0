"""Fixtures for the daemon's end-to-end tests (a module may define its own instead)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.live.emulator import Emulator, Reply, Scenario
from tests.rig.emulator import tone
from tests.rig.gpio import mock_pins


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    with mock_pins() as factory:
        yield factory


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """The emulator answering every turn at once with half a second of a 610 Hz tone."""
    scenario = Scenario(
        think_ms=50, realtime_factor=2.0, use_espeak=False, default_reply=Reply(pcm=tone(610, 500))
    )
    async with Emulator(scenario) as emulator:
        yield emulator
