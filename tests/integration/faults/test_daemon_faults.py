"""Ways the daemon broke when people tried to break it, each through the real daemon, the
paced rig and the emulator: this fails on the broken daemon and passes on the fixed one."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.audio.fakes import eventually
from appliance.daemon.control import ControlClient
from appliance.daemon.state import Ask, Stop
from appliance.live.emulator import Emulator, Fault, FaultKind, Reply, ToolCallSpec
from tests.rig.appliance import call, control, dominant_hz, running_appliance
from tests.rig.emulator import tone
from tests.rig.frames import fake_picamera2
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


async def test_a_control_line_over_the_limit_gets_a_one_line_refusal(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found: a line over 64 KiB logged an ERROR with a traceback.
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        assert r.app.control is not None
        reader, writer = await asyncio.open_unix_connection(str(r.app.control.path))
        writer.write(b'{"cmd": "ask", "text": "' + b"a" * 100_000 + b'"}\n')
        await writer.drain()
        reply = json.loads(await reader.readline())
        writer.close()
        assert reply == {"ok": False, "error": "a request is one JSON line of at most 64 KiB"}
        status = await asyncio.to_thread(ControlClient(r.app.control.path).status)
        assert status["state"] == "idle"
    assert "Traceback" not in caplog.text and "control request failed" not in caplog.text


async def test_a_function_the_session_did_not_declare_is_not_run(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # Found: with the camera in stream mode `look` is not declared, yet a call of it ran.
    camera = fake_picamera2()
    emu.scenario.default_reply = Reply(
        tool_call=ToolCallSpec("look"), after_tool=Reply(text="ok", pcm=tone(610, 200))
    )
    sections = {"camera": {"enabled": True, "mode": "stream"}}
    async with running_appliance(
        jack_audio, emu, tmp_path, picamera2_class=camera, **sections
    ) as r:
        async for _ in r.app.transcript_of_next_turn(Ask("what do you see?")):
            pass
        setup = emu.connections[0].setup
        assert setup is not None and "look" not in setup.function_names
        await eventually(lambda: len(emu.recorder.of("tool_response")) == 1)
    (response,) = emu.recorder.of("tool_response")
    assert "unknown function 'look'" in str(response.message)


async def test_the_last_error_is_cleared_by_a_turn_that_went_through(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # Found: `status` kept showing an old failure after later conversations succeeded.
    emu.scenario.faults = [Fault(FaultKind.BAD_KEY, connection=1)]
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("hello"))
        await r.wait_state("error")
        assert r.app.status()["last_error"]
        emu.scenario.faults = []
        r.app.post(Ask("hello again"))
        speaking = await r.wait_state("speaking")
        await r.wait_state("idle", after=speaking)
        assert r.app.status()["last_error"] is None


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    # Found: `appliance status | head -1` printed a BrokenPipeError traceback.
    conf = tmp_path / "config.toml"
    conf.write_text("[behaviour]\nmode = 'toggle'\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "check", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


async def test_a_huge_bad_frame_is_not_logged_whole(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found: the SDK's parse error carries the whole frame: one 15 MB frame, one 15 MB
    # log line per retry (105 MB of journal in 8 s).
    caplog.set_level(logging.INFO)
    emu.scenario.faults = [Fault(FaultKind.MALFORMED, connection=1, junk_bytes=2_000_000)]
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("hello"))
        speaking = await r.wait_state("speaking", within_s=30)  # the retry went through
        await r.wait_state("idle", after=speaking)
    assert len(emu.connections) >= 2
    assert max(len(rec.getMessage()) for rec in caplog.records) < 2000
    assert "more characters" in caplog.text


async def test_reply_audio_at_another_rate_plays_at_the_right_speed_and_pitch(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # Found: the mime type was never read: 48 kHz audio played at half speed.
    emu.scenario.output_mime = "audio/pcm;rate=48000"
    emu.scenario.default_reply = Reply(text="hi", pcm=tone(610, 1000, rate=48000))
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("hello"))
        speaking = await r.wait_state("speaking")
        await r.wait_state("idle", after=speaking)
        frames, blocks = jack_audio.rig.blocks()
        loud = set(jack_audio.rig.sound_frames().tolist())
        played = [b for f, b in zip(frames, blocks, strict=True) if f in loud]
    assert len(played) * 480 / 48_000 == pytest.approx(1.0, abs=0.1)
    assert dominant_hz(played) == pytest.approx(610, abs=10)


async def test_reply_audio_that_is_not_pcm_is_refused_not_played_as_noise(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found: bytes labelled audio/mpeg were played as full-scale noise.
    emu.scenario.output_mime = "audio/mpeg"
    emu.scenario.default_reply = Reply(text="hi", pcm=bytes(range(256)) * 200)
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        lines = [line async for line in r.app.transcript_of_next_turn(Ask("hello"))]
        await asyncio.sleep(0.5)
        assert any(role == "model" for role, _ in lines)  # the turn itself went on
        assert r.app.machine.state != "error"
    assert len(jack_audio.rig.sound_frames()) == 0
    assert caplog.text.count("sent audio as 'audio/mpeg'") == 1


async def test_a_reply_that_never_completes_does_not_leave_it_speaking_forever(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found: with no turnComplete the daemon stayed `speaking` with a silent speaker.
    emu.scenario.default_reply = Reply(text="hi", pcm=tone(610, 500))
    emu.scenario.faults = [Fault(FaultKind.NO_TURN_COMPLETE, connection=1, turn=1)]
    sections = {"behaviour": {"reply_timeout_s": 2.0, "conversation_timeout_s": 2}}
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        r.app.post(Ask("hello"))
        speaking = await r.wait_state("speaking")
        after = await r.wait_state("idle", after=speaking, within_s=15)
        assert r.states[speaking : after + 1][-1] == "idle"
        r.app.post(Ask("again"))  # and the next turn works
        speaking = await r.wait_state("speaking", after=after)
        await r.wait_state("idle", after=speaking)
    assert "without turnComplete" in caplog.text


async def test_idle_control_connections_are_capped_and_timed_out(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found: ~830 idle connections took the 1,024 fds systemd grants; asyncio then logged
    # ~91,000 tracebacks. Now: at most MAX_CONNECTIONS are held, the oldest silent one
    # makes room, `status` still answers, silent ones time out, the journal says it once.
    from appliance.daemon import control as control_mod

    monkeypatch.setattr(control_mod, "REQUEST_TIMEOUT_S", 2.0)
    cap = control_mod.MAX_CONNECTIONS
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        assert r.app.control is not None
        path = str(r.app.control.path)
        before = len(os.listdir("/proc/self/fd"))
        idle = [await asyncio.open_unix_connection(path) for _ in range(300)]
        await asyncio.sleep(0.3)
        grown = len(os.listdir("/proc/self/fd")) - before
        assert grown <= 300 + cap + 8, f"the daemon holds {grown - 300} connections"
        status = await call(control(r).status)
        assert status["state"] == "idle"
        # The newest silent ones are told why they are closed once the timeout passes.
        reader, _ = idle[-1]
        async with asyncio.timeout(5):
            reply = json.loads(await reader.readline())
        assert reply == {"ok": False, "error": "no request within 2 s"}
        for _, writer in idle:
            writer.close()
        await asyncio.sleep(0.3)
        assert (await call(control(r).status))["state"] == "idle"
    warnings = [rec for rec in caplog.records if "control socket: over" in rec.getMessage()]
    assert len(warnings) == 1
    assert "Traceback" not in caplog.text
