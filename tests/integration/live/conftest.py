"""Fixtures for Live API tests: an emulator on loopback TLS and an SDK client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from appliance.live.emulator import Emulator, Scenario
from tests.rig.emulator import client_for


def fast_scenario(**kwargs: Any) -> Scenario:
    """Short think time, unpaced-ish replies and tones: quick, deterministic tests."""
    defaults: dict[str, Any] = {"think_ms": 20, "realtime_factor": 20.0, "use_espeak": False}
    defaults.update(kwargs)
    return Scenario(**defaults)


@pytest.fixture
def scenario() -> Scenario:
    return fast_scenario()


@pytest.fixture
async def emu(scenario: Scenario) -> AsyncIterator[Emulator]:
    async with Emulator(scenario) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> Any:
    return client_for(emu.base_url, emu.ca_file, emu.api_key)
