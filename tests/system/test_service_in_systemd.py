"""The unit under a real systemd (a booted Debian 12 in systemd-nspawn), installed the
way a user installs it: deploy/install.sh, from wheels, with the key on stdin.

Until `appliance run` exists, the service is started with a drop-in that runs the
stand-in daemon (tests/rig/notify_daemon.py: the real `appliance.daemon.service`
module) and, for the config error, the real `appliance check`. Everything else is the
real unit: user, groups, credential, directories, hardening, watchdog, restart policy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.rig.nspawn import Container

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

KEY = "AIzaSyTESTKEY-system-0123456789abcdefghij"
INSTALL = ["/mnt/src/deploy/install.sh", "--wheels", "/mnt/wheels", "--wheels", "/mnt/project"]
STANDIN = Path(__file__).resolve().parents[1] / "rig" / "notify_daemon.py"
DROPIN = "/etc/systemd/system/appliance.service.d/test.conf"


def show(box: Container, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", "appliance", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(box: Container, check, what: str, timeout_s: float = 60) -> dict[str, str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        props = show(box, "ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus")
        if check(props):
            return props
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {props}")
        time.sleep(0.2)


def journal(box: Container) -> list[dict[str, str]]:
    out = box.run("journalctl", "-u", "appliance", "-o", "json", "--no-pager").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def use_standin(box: Container, exec_start: str | None = None) -> None:
    box.run("systemctl", "stop", "appliance", check=False)
    box.run("systemctl", "reset-failed", "appliance", check=False)
    box.write("/usr/local/lib/appliance-test/notify_daemon.py", STANDIN.read_text())
    cmd = (
        exec_start
        or "/opt/appliance/venv/bin/python /usr/local/lib/appliance-test/notify_daemon.py"
    )
    box.write(DROPIN, f"[Service]\nExecStart=\nExecStart={cmd}\nWatchdogSec=3\nRestartSec=1\n")
    box.run("systemctl", "daemon-reload")


def test_install_script(box: Container) -> None:
    box.run(*INSTALL, "--key-stdin", "--no-start", input=KEY, timeout=300)
    assert box.run("id", "-nG", "appliance").stdout.split() == ["appliance"]
    for group in ("audio", "gpio", "spi", "video"):
        box.run("getent", "group", group)
    assert box.run("stat", "-c", "%a %U:%G", "/etc/appliance/gemini-api-key").stdout.strip() == (
        "600 root:root"
    )
    assert box.run("stat", "-c", "%a %U:%G", "/etc/appliance/config.toml").stdout.strip() == (
        "640 root:appliance"
    )
    assert box.run("systemctl", "is-enabled", "appliance").stdout.strip() == "enabled"
    box.run("/opt/appliance/venv/bin/appliance", "--help")
    # With the real ExecStart path installed, verify is clean.
    verify = box.run(
        "systemd-analyze", "verify", "/etc/systemd/system/appliance.service", check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert "appliance.service" not in verify.stderr, verify.stderr


def test_install_again_is_an_update_that_keeps_the_users_config(box: Container) -> None:
    box.run("sh", "-c", "echo '# mine' >> /etc/appliance/config.toml")
    box.run(*INSTALL, "--no-start", timeout=300)
    assert "# mine" in box.run("cat", "/etc/appliance/config.toml").stdout
    assert box.run("cat", "/etc/appliance/gemini-api-key").stdout == KEY


def test_ready_status_and_journal_fields(box: Container) -> None:
    use_standin(box)
    box.run("systemctl", "start", "appliance")  # returns once READY=1 arrived
    props = show(box, "ActiveState", "SubState", "StatusText", "User")
    assert props == {
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "idle",
        "User": "appliance",
    }
    entries = journal(box)
    state = next(e for e in entries if e.get("MESSAGE") == "state idle")
    assert (state["APPLIANCE_STATE"], state["APPLIANCE_SESSION"], state["APPLIANCE_TURN"]) == (
        "idle",
        "s-1",
        "0",
    )
    assert state["SYSLOG_IDENTIFIER"] == "appliance"
    assert state["APPLIANCE_KEY"] == "[REDACTED]"
    # The key came through LoadCredential= and was redacted wherever it would appear.
    assert any(e.get("MESSAGE") == "the key is [REDACTED]" for e in entries)
    everything = box.run("journalctl", "-o", "json", "--no-pager").stdout
    assert KEY not in everything
    box.run("systemctl", "reload", "appliance")  # SIGHUP: RELOADING=1, the hook, READY=1
    assert any(e.get("MESSAGE") == "reloaded" for e in journal(box))
    assert show(box, "ActiveState")["ActiveState"] == "active"
    box.run("systemctl", "stop", "appliance")
    assert any(e.get("MESSAGE") == "stopped cleanly" for e in journal(box))
    assert show(box, "Result")["Result"] == "success"


def test_a_hung_loop_is_restarted_by_the_watchdog(box: Container) -> None:
    use_standin(box)
    box.run("systemctl", "start", "appliance")
    box.run("systemctl", "kill", "--signal=SIGUSR1", "appliance")  # blocks the event loop
    props = wait_for(
        box, lambda p: p["NRestarts"] == "1" and p["SubState"] == "running", "a restart"
    )
    assert props["ActiveState"] == "active"
    log = box.run("journalctl", "-u", "appliance", "--no-pager").stdout
    assert "Watchdog timeout" in log
    box.run("systemctl", "stop", "appliance")


def test_a_config_error_exits_78_and_is_not_restarted(box: Container) -> None:
    use_standin(box, exec_start="/opt/appliance/venv/bin/appliance check")
    box.write("/etc/appliance/config.toml", '[behaviour]\nmode = "sideways"\n', mode=0o640)
    box.run("chgrp", "appliance", "/etc/appliance/config.toml")
    start = box.run("systemctl", "start", "appliance", check=False)
    assert start.returncode != 0
    props = wait_for(box, lambda p: p["ActiveState"] == "failed", "the failure")
    assert props["ExecMainStatus"] == "78"
    time.sleep(3)  # RestartSec=1: a restart would have happened by now
    props = show(box, "ActiveState", "NRestarts", "ExecMainStatus")
    assert props == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}
    log = box.run("journalctl", "-u", "appliance", "--no-pager").stdout
    assert "behaviour.mode" in log


def test_uninstall_keeps_config_and_key_unless_purged(box: Container) -> None:
    box.run("systemctl", "stop", "appliance", check=False)
    box.run("/mnt/src/deploy/uninstall.sh")
    assert box.run("systemctl", "cat", "appliance", check=False).returncode != 0
    assert box.run("test", "-e", "/opt/appliance", check=False).returncode == 1
    assert box.run("cat", "/etc/appliance/gemini-api-key").stdout == KEY
    box.run("/mnt/src/deploy/uninstall.sh", "--purge")
    assert box.run("test", "-e", "/etc/appliance", check=False).returncode == 1
    assert box.run("getent", "passwd", "appliance", check=False).returncode == 2
