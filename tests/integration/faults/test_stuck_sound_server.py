"""A sound server that stops answering must not freeze the daemon (found by the soak).

The soak froze after "playback device 'rigspk' is not available (it took no audio for
220 ms, twice within 2000 ms)": the playback thread sat in `pcm.close()` (pyalsaaudio,
into the ALSA jack plugin's `jack_client_close`, reading the server's socket) holding the
GIL (gdb's py-bt: the main thread and the capture thread "Waiting for the GIL"), so the
event loop, the capture thread and every other thread waited for the GIL:
no `status`, no watchdog ping, no turn bound. A speaker behind a socket (the jack or
pulse plugin, a Bluetooth bridge) can stop answering like this; only the playback thread
may wait for it.

Another process does the probing: while the daemon holds the GIL nothing in this one
runs. It stops the JACK server (SIGSTOP) mid-reply, asks for `status` over the control
socket, and lets the server go on (SIGCONT) whatever the answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.audio import stalls
from appliance.daemon.state import Ask
from appliance.live.emulator import Emulator, Reply
from tests.rig.appliance import dominant_hz, played_blocks, running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(90), pytest.mark.usefixtures("pins")]

PROBE = """
import json, os, signal, sys, time
from pathlib import Path
from appliance.daemon.control import ControlClient
socket, jackd = Path(sys.argv[1]), int(sys.argv[2])
os.kill(jackd, signal.SIGSTOP)
try:
    time.sleep(2.5)  # the playback thread gives the device up (two stalls) meanwhile
    t0 = time.monotonic()
    try:
        answer = {"state": ControlClient(socket, timeout_s=3.0).status()["state"]}
    except Exception as e:
        answer = {"error": f"{type(e).__name__}: {e}"}
    answer["took_s"] = round(time.monotonic() - t0, 2)
finally:
    os.kill(jackd, signal.SIGCONT)
print(json.dumps(answer))
"""


async def test_a_sound_server_that_stops_answering_does_not_freeze_the_daemon(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    emu.scenario.realtime_factor = 1.0
    emu.scenario.default_reply = Reply(text="a long story", pcm=tone(610, 8000))
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        assert r.app.control is not None
        r.app.post(Ask("tell me a long story"))
        await r.wait_state("speaking")
        await asyncio.sleep(0.5)
        jackd = jack_audio.server._proc
        assert jackd is not None
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PROBE,
            str(r.app.control.path),
            str(jackd.pid),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await probe.communicate()
        assert probe.returncode == 0, err.decode()
        answer = json.loads(out)
        # Back from the stop: the daemon is in one piece (the reply may be cut).
        await r.wait_state("idle", within_s=30)
        assert "state" in answer, f"no status while JACK was stopped: {answer}"
        # The stalled handles were parked, not closed (that could block holding the GIL),
        # and stay so: the devices open beside them (closing one of a JACK server that
        # died would crash libjack).
        assert stalls.parked("rigspk", "playback") and stalls.parked("rigmic", "capture")

        # And the next question is heard at its own pitch through the reopened speaker.
        emu.scenario.default_reply = Reply(text="short", pcm=tone(880, 1200))
        jack_audio.reset()
        seen = len(r.states)
        r.app.post(Ask("and now?"))
        await r.wait_state("speaking", after=seen)
        await r.wait_state("idle", within_s=30, after=seen)
        assert abs(dominant_hz(played_blocks(jack_audio)) - 880) < 20
