"""Start-up cost: what `appliance` imports before it can answer, in instructions and time.

On a Pi Zero 2 W, Python start-up is dominated by imports. Wall time on this shared
machine is noisy, but valgrind's instruction counts repeat run to run, and
shared/notes/test-rig.md gives a first estimate of a Pi Zero 2 W's seconds from them
(a Cortex-A53 at 1 GHz retires very roughly 0.5-0.8 instructions per cycle on Python:
instructions / 0.6e9). Also measured: wall time from `appliance run` starting to
READY=1 on the virtual sound card, median of a few runs.

    .venv/bin/python bench/startup.py [--runs 3] [--no-callgrind]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PI_INSTRUCTIONS_PER_S = 0.6e9

IMPORTS = {
    "python -c pass (interpreter)": "pass",
    "appliance.cli (every CLI verb)": "import appliance.cli",
    "appliance.daemon.app (before READY=1)": "import appliance.daemon.app",
    "appliance.live.client (after READY=1, in the background)": "import appliance.live.client",
}


def instructions(code: str) -> int:
    with tempfile.NamedTemporaryFile(suffix=".out") as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
             sys.executable, "-c", code],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    match = re.search(r"Collected : (\d+)", done.stderr)
    assert match, done.stderr[-500:]
    return int(match.group(1))


def time_to_ready(tmp: Path) -> float:
    """Seconds from spawning `appliance run` to its READY=1, on the virtual room."""
    from appliance.demo.room import JackServer, RoomClient, alsa_config

    conf = tmp / "config.toml"
    conf.write_text(
        '[audio]\ncapture_device = "roommic"\nplayback_device = "roomspk"\n'
        f'[control]\nsocket = "{tmp / "control.sock"}"\n'
    )
    server = JackServer(name=f"bench-startup-{os.getpid()}")
    server.start()
    try:
        with server.environment():
            room = RoomClient(server.name, name="room")
            try:
                notify_path = tmp / "notify.sock"
                notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                notify.bind(str(notify_path))
                notify.settimeout(60)
                env = {
                    **os.environ,
                    "NOTIFY_SOCKET": str(notify_path),
                    "ALSA_CONFIG_PATH": str(alsa_config(tmp / "asound.conf")),
                    "STATE_DIRECTORY": str(tmp / "state"),
                }
                env.pop("GEMINI_API_KEY", None)
                started = time.monotonic()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "appliance", "run", "--config", str(conf)],
                    env=env,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    while "READY=1" not in notify.recv(4096).decode().splitlines():
                        pass
                    return time.monotonic() - started
                finally:
                    proc.terminate()
                    proc.wait(15)
                    notify.close()
                    notify_path.unlink()
            finally:
                room.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    if not args.no_callgrind:
        print("| imports | instructions | est. Pi Zero 2 W |")
        print("| --- | --- | --- |")
        for name, code in IMPORTS.items():
            count = instructions(code)
            print(f"| {name} | {count / 1e9:.2f} G | {count / PI_INSTRUCTIONS_PER_S:.1f} s |")
    with tempfile.TemporaryDirectory() as tmp:
        times = [time_to_ready(Path(tmp)) for _ in range(args.runs)]
    print(
        f"\n`appliance run` to READY=1 here: median {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
