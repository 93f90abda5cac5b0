"""`systemd-analyze` on the unit file: it parses, and its hardening scores "OK" or better.

The host has systemd's tools but no running systemd; `verify` needs the ExecStart
binary to exist, so it runs on a copy pointing at /bin/true (the booted-container
system test verifies the installed unit with the real path).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "appliance.service"
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (apt install systemd)"
)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    text = UNIT.read_text()
    assert "ExecStart=/opt/appliance/venv/bin/appliance run" in text
    copy = tmp_path / "appliance.service"
    copy.write_text(text.replace("/opt/appliance/venv/bin/appliance run", "/bin/true run"))
    return copy


def test_verify_is_clean(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "appliance.service" not in result.stderr, result.stderr


def test_security_exposure_is_ok_or_better(unit_copy: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    assert verdict in ("OK", "SAFE"), (score, verdict)
    assert score <= 2.0, f"exposure {score}: a hardening line was lost"


def test_the_promises_the_daemon_relies_on() -> None:
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify"
    assert settings["RestartPreventExitStatus"] == "78"
    assert settings["Restart"] == "on-failure"
    assert settings["LoadCredential"] == "gemini-api-key:/etc/appliance/gemini-api-key"
    assert settings["SupplementaryGroups"] == "audio gpio spi video"
    assert settings["DevicePolicy"] == "closed"
    assert int(settings["WatchdogSec"]) > 0
