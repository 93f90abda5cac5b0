"""`appliance run` as systemd runs it: its own process, sd_notify to a socket the test
binds, the CLI verbs over the control socket, the real rig audio, SIGTERM to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.live.emulator import Reply, Scenario, ThreadedEmulator
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120)]

SECRET_KEY = "AIzaSy-process-test-key-never-logged-0001"


@pytest.fixture
def emu() -> Iterator[ThreadedEmulator]:
    scenario = Scenario(
        think_ms=50, use_espeak=False, default_reply=Reply(text="Hi.", pcm=tone(610, 400))
    )
    with ThreadedEmulator(scenario, api_key=SECRET_KEY) as emulator:
        yield emulator


def appliance(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_run_notifies_systemd_serves_the_cli_and_stops_cleanly(
    jack_audio: JackAudio, emu: ThreadedEmulator, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    conf = tmp_path / "config.toml"
    conf.write_text(
        f'[live]\nendpoint = "{emu.base_url}"\nca_file = "{emu.ca_file}"\n'
        f'[audio]\ncapture_device = "rigmic"\nplayback_device = "rigspk"\nearcons = []\n'
        f'[control]\nsocket = "{sock}"\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(30)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "GEMINI_API_KEY": SECRET_KEY,
    }
    env.pop("JOURNAL_STREAM", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "run", "--config", str(conf), "--debug"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages: list[str] = []

    def until(wanted: str) -> None:
        while True:
            message = notify.recv(4096).decode()
            messages.extend(message.splitlines())
            if wanted in message.splitlines():
                return

    try:
        until("READY=1")
        assert "STATUS=idle" in messages
        until("WATCHDOG=1")

        lines = appliance("ask", "--socket", str(sock), "hello there", env=env)
        assert lines.returncode == 0, lines.stderr
        assert lines.stdout.splitlines() == ["you: hello there", "assistant: Hi."]
        until("STATUS=idle")
        assert "STATUS=thinking" in messages and "STATUS=speaking" in messages

        status = appliance("status", "--socket", str(sock), env=env)
        assert status.returncode == 0
        assert "state: idle" in status.stdout and "turns: 1" in status.stdout

        proc.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate(timeout=10)[1]
        notify.close()
    assert "user: hello there" in err  # transcripts are logged...
    assert SECRET_KEY not in err  # ...and the key never is, even at debug level
    assert not sock.exists()  # the control socket is removed on the way out
    # The CLI says what to do when the daemon is not running.
    gone = appliance("talk", "--socket", str(sock), env=env)
    assert gone.returncode == 69
    assert "systemctl status appliance" in gone.stderr


def test_run_with_a_bad_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text("[audio]\nperiod_ms = 500\n")
    done = appliance("run", "--config", str(conf), env=dict(os.environ))
    assert done.returncode == 78
    assert f"{conf}: audio.period_ms: Input should be less than or equal to 64" in done.stderr
