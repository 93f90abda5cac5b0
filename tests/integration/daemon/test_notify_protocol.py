"""sd_notify from a real process: a test binds its own NOTIFY_SOCKET and reads what the
service module sends (READY, STATUS, WATCHDOG, STOPPING, in order), including over an
abstract socket, and sees the watchdog pings stop when the event loop hangs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(60)


class Listener:
    def __init__(self, tmp: Path, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"appliance-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = str(tmp / "notify.sock")
            self.sock.bind(self.address)
        self.sock.settimeout(20)

    def next(self, timeout: float = 20) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def until(self, wanted: str) -> list[str]:
        seen = []
        while True:
            msg = self.next()
            seen.append(msg)
            if wanted in msg.splitlines():
                return seen


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def daemon(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Listener, subprocess.Popen[str]]]:
    listener = Listener(tmp_path, abstract=request.param)
    conf = tmp_path / "config.toml"
    conf.write_text("")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": listener.address,
        "WATCHDOG_USEC": "200000",
        "APPLIANCE_CONFIG": str(conf),
        "GEMINI_API_KEY": "AIzaSyTESTKEY-0123456789abcdefghijklmno",
    }
    env.pop("JOURNAL_STREAM", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rig.notify_daemon"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield listener, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        listener.sock.close()


def test_ready_status_watchdog_then_stopping_in_order(
    daemon: tuple[Listener, subprocess.Popen[str]],
) -> None:
    listener, proc = daemon
    first = listener.next()
    # The watchdog task may ping before READY; READY must come with its STATUS.
    messages = [first, *([] if "READY=1" in first else listener.until("READY=1"))]
    ready = next(m for m in messages if "READY=1" in m)
    assert ready.splitlines() == ["READY=1", "STATUS=idle"]
    pings = [m for m in messages if m == "WATCHDOG=1"]
    while len(pings) < 3:
        msg = listener.next()
        assert msg == "WATCHDOG=1", msg
        pings.append(msg)
    proc.send_signal(signal.SIGTERM)
    rest = listener.until("STOPPING=1")
    assert all(m == "WATCHDOG=1" for m in rest[:-1]), rest
    after = [listener.next() for _ in range(1)]
    while after[-1] == "WATCHDOG=1":
        after.append(listener.next())
    assert after[-1] == "STATUS=stopped"
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "stopped cleanly" in stderr


def test_a_hung_loop_stops_the_watchdog_pings(
    daemon: tuple[Listener, subprocess.Popen[str]],
) -> None:
    listener, proc = daemon
    listener.until("READY=1")
    assert listener.next() == "WATCHDOG=1"  # pinging before the hang
    proc.send_signal(signal.SIGUSR1)
    listener.until("STATUS=hanging")
    # The loop is blocked from here on: at 0.1 s per ping, 1 s of silence is 10 missed pings.
    with pytest.raises(TimeoutError):
        msg = listener.next(timeout=1.0)
        pytest.fail(f"a message arrived from a hung loop: {msg!r}")


def test_secret_never_reaches_stderr(daemon: tuple[Listener, subprocess.Popen[str]]) -> None:
    listener, proc = daemon
    listener.until("READY=1")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert "the key is [REDACTED]" in stderr
    assert "0123456789abcdefghijklmno" not in stderr
    assert "(state=idle session=s-1 turn=0 key=[REDACTED])" in stderr


def test_without_notify_socket_everything_is_a_no_op() -> None:
    from appliance.daemon.service import Notifier

    notifier = Notifier(environ={"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.ready("idle") is False
    assert notifier.watchdog_interval_s is None
    assert (
        Notifier(environ={"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000"}).watchdog_interval_s
        == 0.5
    )
    other_pid = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert Notifier(environ=other_pid).watchdog_interval_s is None
