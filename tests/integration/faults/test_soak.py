"""The soak's short variant (bench/soak.py has the long one and its figures): 25 short
turns, typed and spoken, with Live faults at random from a fixed seed, through the real
daemon. Every turn comes to rest (idle, or error after a fatal fault) and `status`
answers; fds, asyncio tasks and threads are flat from warm-up to the end; no audio
left the device outside a conversation."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.live.emulator import Emulator
from appliance.live.emulator.recorder import Recorder
from bench.soak import RECORDS_KEPT, scenario, soak
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(240), pytest.mark.usefixtures("pins")]


async def test_twenty_five_turns_with_faults_leave_nothing_behind(
    jack_audio: JackAudio, tmp_path: Path
) -> None:
    recorder = Recorder(keep_raw=False, limit=RECORDS_KEPT)
    async with Emulator(scenario(), recorder=recorder) as emu:
        result = await soak(
            jack_audio, emu, tmp_path, turns=25, seed=13, fault_rate=0.3, check_every=10
        )
    assert result.stuck == []
    assert result.turns == 25
    assert result.spoken > 0 and result.typed > 0
    assert sum(result.faults.values()) >= 6  # the seed injects faults of several kinds
    assert len(result.faults) >= 4
    assert result.leaks == [] and result.leaked_bytes == 0
    warm, last = result.warm, result.samples[-1]
    assert last.fds <= warm.fds + 2, [(s.turn, s.fds) for s in result.samples]
    assert last.tasks <= warm.tasks + 2, [(s.turn, s.tasks) for s in result.samples]
    assert last.threads <= warm.threads + 1, [(s.turn, s.threads) for s in result.samples]
