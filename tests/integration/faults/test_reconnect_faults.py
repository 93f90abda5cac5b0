"""A server that sets every connection up and then breaks it, through the real daemon, the
paced rig and the emulator's after-setup faults.

Found: the failure count started again at every successful setup, so backoff stayed at
0.25-0.5 s, and each reconnect re-armed the silence timeout: ~100 reconnects a minute,
`listening` for good, the room's audio streaming the whole time.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from appliance.daemon.state import Press
from appliance.live.emulator import Emulator, Fault, FaultKind
from tests.rig.appliance import running_appliance
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120), pytest.mark.usefixtures("pins")]

BREAKS = {
    "bad JSON": FaultKind.MALFORMED,
    "TCP reset": FaultKind.DROP,
    "close 1011": FaultKind.INTERNAL,
    "close 1000": FaultKind.CLOSE_NORMAL,
}


@pytest.mark.parametrize("kind", list(BREAKS.values()), ids=list(BREAKS))
async def test_a_server_that_breaks_every_connection_ends_the_conversation_offline(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: FaultKind,
) -> None:
    caplog.set_level(logging.INFO)
    emu.scenario.faults = [Fault(kind, after_setup_s=0.2, once=False, junk_bytes=2_000_000)]
    sections = {
        "live": {"reconnect_max_delay_s": 1.0},
        "behaviour": {"conversation_timeout_s": 120, "send_audio": "all"},
    }
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        r.app.post(Press())
        listening = await r.wait_state("listening")
        await r.wait_state("offline", after=listening, within_s=40)
        connections, audio = len(emu.connections), len(emu.received_audio())
        await asyncio.sleep(1.5)
        assert len(emu.connections) == connections  # no more attempts
        assert len(emu.received_audio()) == audio  # the microphone stopped
        assert r.app.status()["last_error"]
    assert 2 < connections <= 9  # the first, then at most 8 attempts
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert len(delays) == connections - 1
    assert max(delays[1:]) > delays[0]  # the backoff grew (logged to 0.1 s)
    assert "--Offline" in caplog.text and "Earcon(error)" in caplog.text
    assert max(len(rec.getMessage()) for rec in caplog.records) < 2000  # no whole frame


async def test_reconnects_alone_never_rearm_the_silence_timeout(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    emu.scenario.faults = [Fault(FaultKind.DROP, after_setup_s=0.3, once=False)]
    sections = {
        "live": {"reconnect_max_delay_s": 2.0},  # giving up takes longer than the timeout
        "behaviour": {"conversation_timeout_s": 3, "send_audio": "all"},
    }
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        r.app.post(Press())
        listening = await r.wait_state("listening")
        idle = await r.wait_state("idle", after=listening, within_s=20)
        assert "offline" not in r.states[listening:idle]  # the silence ran out first
        connections = len(emu.connections)
        await asyncio.sleep(1.0)
        assert len(emu.connections) == connections
    assert connections >= 2
