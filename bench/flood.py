"""Flood: the Live server sends valid but useless messages as fast as it can for a while
during a turn (the emulator's FLOOD fault); how long `status` takes meanwhile, and how
far behind the daemon is when the flood ends.

The daemon runs in this process on the JACK dummy rig with the TLS emulator and the real
google-genai SDK (tests/rig/appliance.py `running_appliance`), the emulator in the same
loop (it yields after every message it sends, so the flood is as fast as the loop lets
it be). `status` is asked every 100 ms from a thread of its own (tests/rig/probe.py).

    .venv/bin/python bench/flood.py                     # 10 s flood, 3 runs
    .venv/bin/python bench/flood.py --flood-s 4 --runs 1 --out /tmp/flood.md

"Behind" is the time from the flood's last message to the end of the turn that follows
it (its reply is 0.3 s of audio sent at 8x real time: without a backlog, well under 0.2 s).
Writes bench/results/flood.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.daemon.state import Ask  # noqa: E402


@dataclass
class Run:
    """One flooded turn."""

    messages: int
    flood_s: float
    idle_status_ms: float
    """Median `status` latency before the turn."""
    flood_status_ms: list[float]
    """Every `status` latency sent during the flood."""
    behind_s: float
    """From the flood's last message to the turn's end in the daemon."""
    log_records: int
    """Log records the daemon wrote during the turn."""


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("appliance") and ".emulator" not in record.name:
            self.count += 1


async def one_run(flood_s: float, audio: bool = False) -> Run:
    from appliance.live.emulator import Fault, FaultKind
    from tests.rig.appliance import running_appliance
    from tests.rig.emulator_process import EmulatorProcess, flooding
    from tests.rig.gpio import mock_pins
    from tests.rig.jack import JackAudio, jack_rig, rig_alsa_config
    from tests.rig.probe import StatusProbe

    flood = Fault(FaultKind.FLOOD, connection=1, turn=1, flood_s=flood_s, flood_audio=audio)
    counter = _Count()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as tmp, jack_rig() as (server, rig), mock_pins():
            os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp) / "alsa").write())
            os.environ["JACK_DEFAULT_SERVER"] = server.name
            jack = JackAudio(server, rig, Path(os.environ["ALSA_CONFIG_PATH"]))
            jack.reset()
            with EmulatorProcess(flooding([flood]), records_kept=1000) as emu:
                async with running_appliance(jack, emu, Path(tmp)) as r:  # type: ignore[arg-type]
                    assert r.app.control is not None
                    probe = StatusProbe(r.app.control.path).start()
                    await asyncio.sleep(1.0)
                    idle = [s.latency for s in probe.samples]
                    counter.count = 0
                    async for _ in r.app.transcript_of_next_turn(Ask("hello")):
                        pass
                    done = time.monotonic()
                    await asyncio.to_thread(probe.stop)  # it may wait on the loop
                    records = counter.count
                    info = emu.connections[0]
                    ended = info.flood_ended_ns / 1e9
                    during = probe.between(ended - flood_s, ended)
                    return Run(
                        messages=info.flood_messages,
                        flood_s=flood_s,
                        idle_status_ms=statistics.median(idle) * 1000,
                        flood_status_ms=[s.latency * 1000 for s in during],
                        behind_s=done - ended,
                        log_records=records,
                    )
    finally:
        logging.getLogger().removeHandler(counter)


def report(runs: list[Run], command: str, label: str) -> str:
    lines = [
        "# Flood: `status` while the Live server floods useless messages",
        "",
        f"`{command}` ({label}). The daemon in-process on the JACK rig, the TLS emulator in",
        "the same loop, the real google-genai SDK; `status` asked every 100 ms from a thread.",
        "",
        "| run | flood s | messages | msg/s | idle status ms | flood status ms median / max"
        " | behind s | log records |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(runs, 1):
        flood = run.flood_status_ms or [float("nan")]
        lines.append(
            f"| {i} | {run.flood_s:g} | {run.messages} | {run.messages / run.flood_s:.0f} "
            f"| {run.idle_status_ms:.1f} | {statistics.median(flood):.0f} / {max(flood):.0f} "
            f"| {run.behind_s:.2f} | {run.log_records} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-s", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--audio", action="store_true", help="every third message is one sample of audio"
    )
    parser.add_argument("--label", default="this branch")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/flood.md")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        runs.append(asyncio.run(one_run(args.flood_s, args.audio)))
        print(runs[-1], flush=True)
    command = f".venv/bin/python bench/flood.py --flood-s {args.flood_s:g} --runs {args.runs}"
    command += " --audio" if args.audio else ""
    text = report(runs, command, args.label)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
