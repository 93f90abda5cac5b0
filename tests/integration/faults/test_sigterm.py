"""SIGTERM stops the daemon cleanly in every state: `appliance run` as systemd runs it (its
own process, sd_notify to a socket the test binds), on the paced rig, with the emulator.

Found: a `suppress(CancelledError)` around awaiting a cancelled task also swallowed the
caller's own cancellation, and a hung server held the close handshake for websockets'
10 s: after talk, a frozen server, stop and SIGTERM the daemon kept running (systemd
waited its full TimeoutStopSec and killed it). Each state below is reached for real,
then SIGTERM: the process must exit 0 (the bound is only a hang detector) and nothing
reaches the service after it began to stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.live.emulator import Fault, FaultKind, Reply, Scenario, ThreadedEmulator
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120)]

HANG_S = 8.0
"""Far above a clean stop (well under a second here); below systemd's 10 s SIGKILL."""
IN_FLIGHT_NS = 500_000_000
"""Frames already on their way when the stop began may still arrive this late."""


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    notify: socket.socket
    sock: Path
    env: dict[str, str]
    seen: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def until(self, wanted: Callable[[str], bool], within_s: float = 30.0) -> str:
        """The next notification line `wanted` accepts (lines are taken in order)."""
        deadline = time.monotonic() + within_s
        while True:
            while self.pending:
                line = self.pending.pop(0)
                self.seen.append(line)
                if wanted(line):
                    return line
            self.notify.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.pending = self.notify.recv(4096).decode().splitlines()
            except TimeoutError:
                raise AssertionError(f"not seen within {within_s} s; seen {self.seen}") from None

    def until_state(self, state: str, within_s: float = 30.0) -> None:
        self.until(
            lambda line: line == f"STATUS={state}" or line.startswith(f"STATUS={state}:"),
            within_s,
        )

    def verb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "appliance", *args, "--socket", str(self.sock)],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            check=False,
        )

    def verb_in_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "appliance", *args, "--socket", str(self.sock)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    scenario = Scenario(
        think_ms=50, use_espeak=False, default_reply=Reply(text="Hi.", pcm=tone(610, 400))
    )
    with ThreadedEmulator(scenario) as emulator:
        yield emulator


@pytest.fixture
def daemon(jack_audio: JackAudio, emu: ThreadedEmulator, tmp_path: Path) -> Iterator[Daemon]:
    sock = tmp_path / "control.sock"
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[live]\nendpoint = "{emu.base_url}"\nca_file = "{emu.ca_file}"\n'
        "setup_timeout_s = 60\nreconnect_max_delay_s = 0.5\n"
        f'[audio]\ncapture_device = "{jack_audio.capture_device}"\n'
        f'playback_device = "{jack_audio.playback_device}"\nearcons = []\n'
        '[behaviour]\nconversation_timeout_s = 120\nreply_timeout_s = 120\nsend_audio = "all"\n'
        f'[control]\nsocket = "{sock}"\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "GEMINI_API_KEY": emu.api_key,
        "PYTHONFAULTHANDLER": "1",
    }
    env.pop("JOURNAL_STREAM", None)
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(conf)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    daemon = Daemon(proc, notify, sock, env)
    try:
        daemon.until(lambda line: line == "READY=1", within_s=60)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate(timeout=10)[1]
        notify.close()
        print(err[-20000:])


def stop_and_check(daemon: Daemon, emu: ThreadedEmulator) -> None:
    """SIGTERM: exit 0 before the hang bound; nothing reaches the service afterwards."""
    connections = len(emu.connections)
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.until(lambda line: line == "STOPPING=1")
    stopping_ns = time.monotonic_ns()
    try:
        code = daemon.proc.wait(HANG_S)
    except subprocess.TimeoutExpired:
        daemon.proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
        raise AssertionError(f"still running {HANG_S:g} s after SIGTERM") from None
    assert code == 0
    late = [r for r in emu.records if r.t_ns > stopping_ns + IN_FLIGHT_NS]
    assert late == [], f"sent after the stop began: {[r.kind for r in late]}"
    assert len(emu.connections) == connections


def test_idle(daemon: Daemon, emu: ThreadedEmulator) -> None:
    daemon.until_state("idle")
    stop_and_check(daemon, emu)


def test_connecting(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.faults = [Fault(FaultKind.NO_SETUP_COMPLETE, once=False)]
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("connecting")
    stop_and_check(daemon, emu)


def test_listening(daemon: Daemon, emu: ThreadedEmulator) -> None:
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("listening")
    time.sleep(0.5)  # the microphone streams
    stop_and_check(daemon, emu)


def test_thinking(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.default_reply = Reply(text="Hi.", pcm=tone(610, 400), think_ms=60_000)
    asking = daemon.verb_in_background("ask", "are you there?")
    try:
        daemon.until_state("thinking")
        stop_and_check(daemon, emu)
    finally:
        asking.wait(30)


def test_speaking(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.realtime_factor = 1.0
    emu.scenario.default_reply = Reply(text="A long story.", pcm=tone(610, 20_000))
    asking = daemon.verb_in_background("ask", "tell me a long story")
    try:
        daemon.until_state("speaking")
        time.sleep(0.5)
        stop_and_check(daemon, emu)
    finally:
        asking.wait(30)


def test_muted(daemon: Daemon, emu: ThreadedEmulator) -> None:
    assert daemon.verb("mute", "on").returncode == 0
    daemon.until_state("muted")
    stop_and_check(daemon, emu)


def test_offline(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.faults = [Fault(FaultKind.INTERNAL, once=False)]
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("offline")
    stop_and_check(daemon, emu)


def test_error(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.faults = [Fault(FaultKind.BAD_KEY)]
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("error")
    stop_and_check(daemon, emu)


def test_listening_to_a_frozen_server(daemon: Daemon, emu: ThreadedEmulator) -> None:
    emu.scenario.faults = [Fault(FaultKind.FREEZE, after_setup_s=0.5)]
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("listening")
    time.sleep(1.0)  # the server hangs; the microphone streams into the void
    stop_and_check(daemon, emu)


def test_stopped_then_sigterm_with_a_frozen_server(daemon: Daemon, emu: ThreadedEmulator) -> None:
    # The sequence of the report: talk, the server hangs, stop, SIGTERM 0.3 s later.
    emu.scenario.faults = [Fault(FaultKind.FREEZE, after_setup_s=0.5)]
    assert daemon.verb("talk").returncode == 0
    daemon.until_state("listening")
    time.sleep(1.0)
    assert daemon.verb("stop").returncode == 0
    time.sleep(0.3)
    stop_and_check(daemon, emu)
