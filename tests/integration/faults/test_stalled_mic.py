"""A microphone that stops delivering without an error, through the real daemon.

The microphone is alsa-lib's `file` plugin reading a FIFO that `tests/rig/fifo_mic.py`
feeds in real time; the feeder is stopped (SIGSTOP) to stall it and let go on (SIGCONT)
to bring it back. While it is stopped the plugin's blocking read(2) of the FIFO, inside
`pcm.read()`, waits for good: out of reach of the capture thread's poll().

Found: such a microphone was never reported (the daemon said idle), and `mute on` froze
the command queue: `capture.stop()` waited for the thread stuck in the read, so every
later verb queued unhandled until audio flowed again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.audio.devices import DeviceState
from appliance.audio.fakes import eventually
from appliance.daemon.control import ControlClient
from appliance.daemon.state import Press
from appliance.live.emulator import Emulator, Reply
from tests.rig import fifo_mic
from tests.rig.alsa import AlsaRig
from tests.rig.appliance import Running, call, running_appliance, speech_48k
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120), pytest.mark.usefixtures("pins")]


class FifoMic:
    """The feeder process of a FIFO microphone: `pause()` stalls it, `resume()` and
    `speak()` (the rig's speech, once) as the names say."""

    def __init__(self, directory: Path) -> None:
        import numpy as np

        self.fifo = directory / "mic.fifo"
        os.mkfifo(self.fifo)
        speech = directory / "speech.raw"
        voice = speech_48k()[::3]  # 16 kHz; a crude decimation is speech enough for a VAD
        speech.write_bytes((voice * 32767).astype("<i2").tobytes())
        assert len(np.frombuffer(speech.read_bytes(), "<i2")) > 16_000
        self.proc = subprocess.Popen(
            [sys.executable, fifo_mic.__file__, str(self.fifo), str(speech)],
            stdout=subprocess.DEVNULL,
        )

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def speak(self) -> None:
        os.kill(self.proc.pid, signal.SIGUSR1)

    def close(self) -> None:
        self.resume()
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def mic(
    jack_audio: JackAudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FifoMic]:
    feeder = FifoMic(tmp_path)
    rig = AlsaRig(tmp_path / "alsa")
    rig.file_capture("fifomic", feeder.fifo)
    rig.jack_playback(jack_audio.playback_device, "rig:spk")
    rig.apply(monkeypatch)
    try:
        yield feeder
    finally:
        feeder.close()


def stall_lines(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        "fifomic" in rec.getMessage() and "did not return" in rec.getMessage()
        for rec in caplog.records
    )


async def flowing(r: Running) -> None:
    capture = r.app.capture
    assert capture is not None
    read = capture.periods_read
    await eventually(
        lambda: capture.state == DeviceState.OK and capture.periods_read > read + 10, within_s=15
    )


async def stalled_and_answering(
    r: Running, mic: FifoMic, caplog: pytest.LogCaptureFixture, *, since: int
) -> int:
    """Stall the mic: `error` naming it, once; every verb handled while it stays stalled."""
    assert r.app.control is not None
    client = ControlClient(r.app.control.path, timeout_s=5.0)
    lines = stall_lines(caplog)
    mic.pause()
    error = await r.wait_state("error", after=since, within_s=10)
    status = await call(client.status)
    assert status["state"] == "error"
    assert "'fifomic'" in status["last_error"] and "did not return" in status["last_error"]
    assert stall_lines(caplog) == lines + 1
    await call(client.mute, True)  # froze the queue: stop() waited for the hung read
    muted = await r.wait_state("muted", after=error, within_s=10)
    await call(client.mute, False)  # the device is opened again: still stalled
    unmuted = await r.wait_state("idle", after=muted, within_s=10)
    again = await r.wait_state("error", after=unmuted, within_s=10)
    await call(client.stop)
    await r.wait_state("idle", after=again, within_s=10)
    assert (await call(client.status))["state"] == "idle"
    status = await call(client.status)
    assert status["state"] == "idle" and r.states[-1] == "idle"
    assert "did not return" in status["device_problems"]["microphone"]  # still stalled
    # A press meanwhile is the error again, not a conversation with a deaf microphone.
    connections, pressed = len(r.emu.connections), len(r.states)
    r.app.post(Press())
    refused = await r.wait_state("error", after=pressed, within_s=10)
    assert "listening" not in r.states[pressed:] and len(r.emu.connections) == connections
    await call(client.stop)
    await r.wait_state("idle", after=refused, within_s=10)
    reported = stall_lines(caplog)
    assert reported == lines + 2  # once, and once more after the reopen by the unmute
    return reported


async def test_a_microphone_that_stops_delivering_is_reported_and_recovers(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    mic: FifoMic,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    emu.scenario.default_reply = Reply(text="yes", pcm=tone(610, 400))
    sections = {
        "audio": {"capture_device": "fifomic"},
        "behaviour": {"conversation_timeout_s": 10},
    }
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        await flowing(r)

        # Idle: the room's audio stops coming.
        reported = await stalled_and_answering(r, mic, caplog, since=0)
        assert stall_lines(caplog) == reported  # no flood while it stays stalled
        mic.resume()
        await flowing(r)  # reopened on its own
        # The daemon's view, not the device's: the recovery reaches it through its inbox,
        # and a press before that is (rightly) the error again.
        await eventually(lambda: not r.app.device_problems and r.app.machine.state == "idle")

        # Listening: it stops mid-conversation.
        r.app.post(Press())
        listening = await r.wait_state("listening", after=len(r.states) - 1)
        await stalled_and_answering(r, mic, caplog, since=listening)
        mic.resume()
        await flowing(r)
        await eventually(lambda: not r.app.device_problems and r.app.machine.state == "idle")

        # And the next press works: the speech reaches the service, the reply plays.
        heard = len(emu.received_audio())
        r.app.post(Press())
        listening = await r.wait_state("listening", after=len(r.states) - 1)
        mic.speak()
        await r.wait_state("speaking", after=listening, within_s=20)
        assert len(emu.received_audio()) - heard > 32_000  # over a second of it
    assert "Traceback" not in caplog.text
