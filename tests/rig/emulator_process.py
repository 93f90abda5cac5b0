"""The Live emulator in a process of its own, for faults that need a server as fast as a
real one: in the daemon's loop (or a thread, under the same GIL) the emulator can only
send as fast as the daemon lets it, so a flood never outruns the client.

`emulator_process(faults, reply_pcm)` starts `python -m tests.rig.emulator_process`,
which serves until its stdin closes; the parent gets the address, CA and key, and asks
for the connections' facts (`connections()`: what `ConnectionInfo` knows about floods
and turns). Times are `time.monotonic_ns()`, one clock for both processes on Linux.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.live.emulator.recorder import Recorder


@dataclass
class EmulatorProcess:
    """What `running_appliance` needs of an emulator, for one in another process."""

    proc: subprocess.Popen[str]
    base_url: str
    ca_file: Path
    api_key: str
    recorder: Recorder = field(default_factory=Recorder)
    """Empty: the child's records stay in the child (the privacy watch sees none)."""

    def connections(self) -> list[dict[str, Any]]:
        """Per connection: `turns`, `flood_messages`, `flood_ended_ns`."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("info\n")
        self.proc.stdin.flush()
        return list(json.loads(self.proc.stdout.readline()))


@contextlib.contextmanager
def emulator_process(
    faults: list[dict[str, Any]], reply_pcm: bytes, realtime_factor: float = 8.0
) -> Iterator[EmulatorProcess]:
    """An emulator in a child process; `faults` are `Fault` fields (kind by value)."""
    spec = {
        "faults": faults,
        "reply_pcm": base64.b64encode(reply_pcm).decode(),
        "realtime_factor": realtime_factor,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rig.emulator_process", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        hello = json.loads(proc.stdout.readline())
        yield EmulatorProcess(proc, hello["base_url"], Path(hello["ca_file"]), hello["api_key"])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _serve(spec: dict[str, Any]) -> None:
    from appliance.live.emulator import Emulator, Fault, FaultKind, Reply, Scenario

    faults = [Fault(**{**f, "kind": FaultKind(f["kind"])}) for f in spec["faults"]]
    scenario = Scenario(
        think_ms=50,
        realtime_factor=spec["realtime_factor"],
        use_espeak=False,
        default_reply=Reply(text="ok", pcm=base64.b64decode(spec["reply_pcm"])),
        faults=faults,
    )
    loop = asyncio.get_running_loop()
    async with Emulator(scenario, recorder=Recorder(keep_raw=False, limit=1000)) as emu:
        hello = {"base_url": emu.base_url, "ca_file": str(emu.ca_file), "api_key": emu.api_key}
        print(json.dumps(hello), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "info":
                info = [
                    {
                        "turns": c.turns,
                        "flood_messages": c.flood_messages,
                        "flood_ended_ns": c.flood_ended_ns,
                    }
                    for c in emu.connections
                ]
                print(json.dumps(info), flush=True)


if __name__ == "__main__":
    asyncio.run(_serve(json.loads(sys.argv[1])))
