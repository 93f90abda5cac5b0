"""A Live server that floods valid but useless messages during a turn (issue 13: a 10 s
flood left the daemon 26 s behind and `status` took 4.6-8.7 s), through the real daemon
on the JACK rig and the real google-genai SDK.

The emulator runs in a process of its own (tests/rig/emulator_process.py): in the
daemon's loop it could only send as fast as the daemon reads. `status` is asked every
100 ms from a thread (tests/rig/probe.py). Bounds are fractions of the flood's own
length, generous on purpose: before the fix the answers during a 3 s flood took seconds
and the turn ended over a second after the flood did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from appliance.audio.fakes import eventually
from appliance.daemon.state import Ask
from appliance.live.emulator import Emulator, Fault, FaultKind
from tests.rig.appliance import running_appliance
from tests.rig.emulator_process import EmulatorProcess, flooding
from tests.rig.jack import JackAudio
from tests.rig.probe import StatusProbe

pytestmark = [pytest.mark.jack, pytest.mark.timeout(90), pytest.mark.usefixtures("pins")]

FLOOD_S = 3.0


async def test_status_answers_during_a_flood_and_the_daemon_keeps_up(
    jack_audio: JackAudio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    flood = Fault(FaultKind.FLOOD, connection=1, turn=1, flood_s=FLOOD_S)
    with EmulatorProcess(flooding([flood]), records_kept=1000) as emu:
        server: Emulator = emu  # type: ignore[assignment]  # what running_appliance reads
        async with running_appliance(jack_audio, server, tmp_path) as r:
            assert r.app.control is not None
            probe = StatusProbe(r.app.control.path).start()
            try:
                await asyncio.sleep(0.5)
                before = len(caplog.records)
                async for _ in r.app.transcript_of_next_turn(Ask("hello")):
                    pass
                turn_done = time.monotonic()
                during_turn = caplog.records[before:]
                idle = await r.wait_state("idle", after=len(r.states) - 1, within_s=10)
                await eventually(lambda: not r.app.status()["connected"])  # closed
                # The next ask is answered as usual (no flood this time).
                async for _ in r.app.transcript_of_next_turn(Ask("and again")):
                    pass
                await r.wait_state("idle", after=idle + 1, within_s=10)
            finally:
                await asyncio.to_thread(probe.stop)  # it may wait on the loop
            info = emu.connections[0]

    assert info.flood_messages > 1000, info  # it was a flood
    ended = info.flood_ended_ns / 1e9
    during = probe.between(ended - FLOOD_S, ended)
    latencies = [round(s.latency, 3) for s in during]
    # `status` kept answering all through the flood, each time within a fraction of it.
    assert len(during) >= 2 * FLOOD_S, latencies
    assert max(latencies) < FLOOD_S / 4, latencies
    # The daemon was not left behind: the turn ended soon after the flood did.
    assert turn_done - ended < FLOOD_S / 4, f"{turn_done - ended:.2f} s behind"
    # The journal said it once, not once per message.
    daemon = [rec for rec in during_turn if rec.name.startswith("appliance")]
    assert len(daemon) < 20, [rec.getMessage() for rec in daemon]
    about = [rec for rec in daemon if "carried nothing" in rec.getMessage()]
    assert len(about) == 1, [rec.getMessage() for rec in daemon]
