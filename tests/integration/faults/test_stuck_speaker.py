"""A speaker whose `write()` never returns, through the real daemon: alsa-lib's `file`
plugin writing into a FIFO that its reader stopped reading (the pipe fills, and the
plugin's blocking write(2) inside `snd_pcm_writei` waits for good; pyalsaaudio lets go
of the GIL there, so the event loop keeps running).

Found: `playback.stop()` waited for the writer thread, the inbox stopped, every verb
queued unhandled while `status` said all was well, and the watchdog kept pinging.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.daemon.control import ControlClient, ControlError
from appliance.daemon.inbox import Call
from appliance.daemon.service import Notifier
from appliance.daemon.state import Ask, Stop
from appliance.live.emulator import Emulator, Reply
from tests.rig.alsa import AlsaRig
from tests.rig.appliance import running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120), pytest.mark.usefixtures("pins")]


class FifoSpeaker:
    """The far end of a FIFO the `file` plugin writes: reads while `reading` is set."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # the plugin's open then returns
        self.reading = threading.Event()
        self.received = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            if not self.reading.wait(0.05):
                continue
            with contextlib.suppress(BlockingIOError):
                self.received += len(os.read(self.fd, 65536))
            self._done.wait(0.005)

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        os.close(self.fd)


@pytest.fixture
def speaker(
    jack_audio: JackAudio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FifoSpeaker]:
    fifo = FifoSpeaker(tmp_path / "speaker.fifo")
    rig = AlsaRig(tmp_path / "alsa")
    rig.jack_capture(jack_audio.capture_device, "rig:mic")
    rig.file_playback("stuckspk", fifo.path)
    rig.apply(monkeypatch)
    try:
        yield fifo
    finally:
        fifo.reading.set()  # let a writer still stuck in the plugin go
        fifo.close()


async def test_a_speaker_stuck_in_write_is_reported_and_reopened(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    speaker: FifoSpeaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.scenario.default_reply = Reply(text="long", pcm=tone(610, 5000))
    sections = {"audio": {"playback_device": "stuckspk"}}
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        r.app.post(Ask("tell me a long story"))  # nobody reads: 64 KiB in, write() hangs
        speaking = await r.wait_state("speaking")
        await asyncio.sleep(1.5)
        r.app.post(Stop())  # stop() would wait for the stuck writer
        error = await r.wait_state("error", after=speaking, within_s=15)
        idle = await r.wait_state("idle", after=error, within_s=15)  # reopened
        assert "stuck" in (r.app.status()["last_error"] or "") or r.app.last_error is None
        speaker.reading.set()  # the speaker takes audio again
        before = speaker.received
        r.app.post(Ask("and now?"))  # the next conversation plays
        speaking = await r.wait_state("speaking", after=idle)
        await r.wait_state("idle", after=speaking, within_s=30)
        assert speaker.received - before > 24_000 * 2  # over a second of it was played
    stuck_lines = [rec for rec in caplog.records if "did not return" in rec.getMessage()]
    assert len(stuck_lines) == 1


class Inbox:
    """Holds the daemon's inbox: an item whose handling waits until `release()`."""

    def __init__(self, app: Any) -> None:
        self.released = asyncio.Event()
        app.post(Call(self.released.wait))

    def release(self) -> None:
        self.released.set()


async def test_the_watchdog_stops_while_the_inbox_is_stuck(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found: the pings came from a loop that still turned while nothing was handled, so
    # systemd never restarted a daemon that ignored every verb.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))  # (libsystemd reads it)
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"})

    def pings() -> int:
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                count += listener.recv(4096).decode().splitlines().count("WATCHDOG=1")
        return count

    try:
        async with running_appliance(jack_audio, emu, tmp_path, notifier=notifier) as r:
            await asyncio.sleep(0.5)
            assert pings() > 0  # 0.1 s apart while all is well
            stuck = Inbox(r.app)
            await asyncio.sleep(0.3)
            pings()  # (one may have gone out before the inbox stuck)
            await asyncio.sleep(1.0)
            assert pings() == 0
            stuck.release()
            await asyncio.sleep(0.5)
            assert pings() > 0
    finally:
        listener.close()


async def test_an_ask_whose_client_left_is_not_run_later(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # Found: an `ask` queued behind a stuck inbox opened a session 40 s after its client
    # had given up and gone.
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        assert r.app.control is not None
        stuck = Inbox(r.app)
        client = ControlClient(r.app.control.path)
        with pytest.raises(ControlError, match="no answer"):
            await asyncio.to_thread(lambda: list(client.ask("what time is it?", timeout_s=1.0)))
        await asyncio.sleep(0.3)  # the daemon sees the client gone
        stuck.release()
        await asyncio.sleep(1.5)
        assert r.states == ["idle"] and emu.connections == []
        lines = [line async for line in r.app.transcript_of_next_turn(Ask("and now?"))]
        assert lines  # a client that waits is answered
