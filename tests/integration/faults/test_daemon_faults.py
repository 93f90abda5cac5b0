"""Ways the daemon broke when people tried to break it, each through the real daemon, the
paced rig and the emulator: this fails on the broken daemon and passes on the fixed one."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import pytest

from appliance.daemon.state import Ask, Stop
from appliance.live.emulator import Emulator, Reply
from tests.rig.appliance import running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120), pytest.mark.usefixtures("pins")]


async def test_a_stop_mid_reply_does_not_silence_the_next_conversation(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # Found: the reply cut by a stop was marked "discard the rest", and the mark
    # outlived the conversation: the next answer was thrown away too (0 bytes played
    # while `ask` printed its transcript).
    emu.scenario.realtime_factor = 1.0
    emu.scenario.replies = [Reply(text="long", pcm=tone(610, 4000)), Reply(text="next")]
    emu.scenario.default_reply = Reply(text="next", pcm=tone(730, 800))
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("tell me a long story"))
        speaking = await r.wait_state("speaking")
        await asyncio.sleep(0.5)
        r.app.post(Stop())  # stopped mid-reply: the conversation ends
        idle = await r.wait_state("idle", after=speaking)
        await asyncio.sleep(0.3)
        jack_audio.rig.stop_recording()
        jack_audio.rig.start_recording()
        r.app.post(Ask("and now?"))
        speaking = await r.wait_state("speaking", after=idle)
        await r.wait_state("idle", after=speaking)
        played = len(jack_audio.rig.sound_frames()) * jack_audio.rig.block / jack_audio.rig.rate
    assert played >= 0.7, f"only {played:.2f} s of the next answer reached the speaker"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("volume.json", '{"percent": 1e999}'),
        ("volume.json", '{"percent": true}'),
        ("session.json", '{"handle": "h", "saved_at": "yesterday"}'),
        ("session.json", '{"handle": "h", "saved_at": 1e999}'),
        ("usage.json", '{"day": "%(today)s", "tally": {"turns": "abc"}}'),
        ("usage.json", '{"day": "%(today)s", "tally": {"turns": 1e999}}'),
        ("usage.json", '{"day": "%(today)s", "tally": []}'),
    ],
)
async def test_a_bad_state_file_never_stops_the_daemon(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    name: str,
    content: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found: each of these crashed every start (a restart loop until the next day), or
    # failed every conversation without ever expiring.
    state = tmp_path / "state"
    state.mkdir()
    (state / name).write_text(content % {"today": datetime.date.today().isoformat()})
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("are you there?"))
        speaking = await r.wait_state("speaking")
        await r.wait_state("idle", after=speaking)
        assert r.app.status()["volume"] == 80  # the default
    assert emu.connections and emu.connections[0].resumed_from is None
    assert str(state / name) in caplog.text
