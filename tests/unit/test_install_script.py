"""deploy/install.sh's refusals, which come before it touches the machine.

An ARMv6 board cannot be had here, so `uname` is a stand-in on PATH that answers as a
Pi Zero W's kernel does (`armv6l`); the rest of the script is the real one, stopped by
the check before anything is installed. The installs themselves are proven in
tests/system/ (amd64) and tests/system/test_install_on_arm.py (arm64, armhf).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

INSTALL = Path(__file__).resolve().parents[2] / "deploy" / "install.sh"


def run_install(tmp_path: Path, machine: str, *args: str) -> subprocess.CompletedProcess[str]:
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    uname = shim / "uname"
    uname.write_text(f'#!/bin/sh\n[ "$1" = -m ] && echo {machine} || exec /bin/uname "$@"\n')
    uname.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_an_armv6_board_is_refused_with_the_reason_and_exit_69(tmp_path: Path) -> None:
    result = run_install(tmp_path, "armv6l", "--no-apt", "--no-start")
    assert result.returncode == 69  # EX_UNAVAILABLE
    assert "ARMv6 board (Pi Zero W, Pi 1" in result.stderr
    assert "pydantic-core" in result.stderr and "Pi Zero 2 W" in result.stderr


def test_an_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_install(tmp_path, "aarch64", "--frobnicate")
    assert result.returncode == 64  # EX_USAGE
    assert "unknown option --frobnicate" in result.stderr
