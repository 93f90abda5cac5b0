"""Config files that crashed `appliance check` or `run` with a traceback (exit 1), found by
fuzzing: each now exits 78 (EX_CONFIG) with one line naming the file and what to fix,
and `check` catches what `run` would die on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "non-UTF-8 byte in a comment": (b"# caf\xe9\n", "line 1: not UTF-8"),
    "board as an array": (b"board = []\n", "board: unknown board []"),
    "board as a table": (b"board = {a = 1}\n", "board: unknown board {'a': 1}"),
    "arrays nested 5000 deep": (
        b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "nested too deeply",
    ),
    "a group that does not exist": (
        b'[control]\ngroup = "nosuchgroup-xyz"\n',
        "control.group: no group 'nosuchgroup-xyz'",
    ),
    "a socket path over 107 bytes": (
        b'[control]\nsocket = "/tmp/' + b"a" * 120 + b'.sock"\n',
        "a Unix socket path has at most 107",
    ),
    "a NUL in the socket path": (
        b'[control]\nsocket = "/tmp/a\\u0000b.sock"\n',
        "the path contains a NUL character",
    ),
    "a NUL in the capture device (it killed the capture thread)": (
        b'[audio]\ncapture_device = "hw:0\\u0000x"\n',
        "audio.capture_device: 'hw:0\\x00x' has a control character",
    ),
    "true for a volume": (b"[audio]\nvolume = true\n", "audio.volume: Input should be a number"),
    "a string for a period": (
        b'[audio]\nperiod_ms = "20"\n',
        "audio.period_ms: Input should be a number, not a string",
    ),
    "a socket directory under a file": (
        b'[control]\nsocket = "/etc/hostname/appliance/control.sock"\n',
        "/etc/hostname is not a directory",
    ),
}


def appliance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_bad_config_exits_78_with_one_clear_line(tmp_path: Path, case: str, command: str) -> None:
    content, words = CASES[case]
    conf = tmp_path / "config.toml"
    conf.write_bytes(content)
    args = ["check", str(conf)] if command == "check" else ["run", "--config", str(conf)]
    done = appliance(*args)
    out = done.stdout + done.stderr
    assert done.returncode == 78, out
    assert "Traceback" not in out
    assert str(conf) in out and words in out
