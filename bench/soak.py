"""Soak: the real daemon for N short turns, typed and spoken, with Live faults injected at
random (seeded, so a run repeats), checking after every turn that nothing crashed or got
stuck, and at intervals that memory, fds, asyncio tasks and threads stay flat and that
no audio left the device outside a conversation (tests.rig.privacy).

The daemon runs in this process (tests/rig/appliance.py `running_appliance` on the JACK
dummy rig, with the TLS Live emulator and the real google-genai SDK), so RSS, open fds,
asyncio tasks and threads are read from /proc/self and the running loop. The emulator
runs in a process of its own (tests/rig/emulator_process.py), so what it keeps does not
count as the daemon's; the short variant in the test run keeps it in-process.

    .venv/bin/python bench/soak.py                      # 2000 turns, seed 1
    .venv/bin/python bench/soak.py --turns 300 --seed 7 --out /tmp/soak.md

Writes bench/results/soak.md. A 60-turn variant runs in the default test run
(tests/integration/faults/test_soak.py), asserting the same invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import faulthandler
import os
import random
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.daemon.state import Ask, Press, Stop  # noqa: E402
from appliance.live.emulator import (  # noqa: E402
    Emulator,
    Fault,
    FaultKind,
    Reply,
    Scenario,
    ToolCallSpec,
)
from appliance.live.emulator.recorder import Recorder  # noqa: E402

if TYPE_CHECKING:  # tests.rig imports numpy and the JACK rig: at run time, lazily
    from tests.rig.appliance import Running
    from tests.rig.jack import JackAudio

RECORDS_KEPT = 4000
"""The emulator's records kept (bounded: the short variant shares the daemon's process,
where spoken turns' audio would show as RSS growth). Checks come often enough that none
is dropped unseen."""
RESTING = frozenset({"idle", "error"})
"""Where every turn must end (error: after a fatal fault, until the next ask)."""
TURN_BOUND_S = 25.0
"""A turn that has not come to rest by then is stuck."""


def reply_pcm() -> bytes:
    from tests.rig.emulator import tone

    return tone(610, 200)


@dataclass(frozen=True)
class Injection:
    """A fault the soak can arm for the next turn's connection."""

    name: str
    kind: FaultKind | None
    """None: not an emulator fault (`mime`)."""
    at_turn: bool
    fatal: bool = False
    mime: str | None = None
    tool: bool = False


INJECTIONS = (
    Injection("bad key", FaultKind.BAD_KEY, at_turn=False, fatal=True),
    Injection("unknown model", FaultKind.UNKNOWN_MODEL, at_turn=False, fatal=True),
    Injection("internal close after setup", FaultKind.INTERNAL, at_turn=False),
    Injection("internal close mid-reply", FaultKind.INTERNAL, at_turn=True),
    Injection("TCP drop mid-reply", FaultKind.DROP, at_turn=True),
    Injection("goAway after setup", FaultKind.GO_AWAY, at_turn=False),
    Injection("goAway mid-reply", FaultKind.GO_AWAY, at_turn=True),
    Injection("no setupComplete", FaultKind.NO_SETUP_COMPLETE, at_turn=False),
    Injection("malformed frame", FaultKind.MALFORMED, at_turn=False),
    Injection("unknown message", FaultKind.UNKNOWN_MESSAGE, at_turn=False),
    Injection("no turnComplete", FaultKind.NO_TURN_COMPLETE, at_turn=True),
    Injection("stall after tool response", FaultKind.STALL_AFTER_TOOL_RESPONSE, True, tool=True),
    Injection("wrong output mime", None, at_turn=False, mime="audio/mpeg"),
)


def scenario() -> Scenario:
    """Short replies, sent fast: a turn is mostly the daemon's own work."""
    pcm = reply_pcm()
    return Scenario(
        think_ms=20,
        realtime_factor=16.0,
        use_espeak=False,
        default_reply=Reply(text="ok", pcm=pcm),
    )


def sections() -> dict[str, dict[str, Any]]:
    """Short timeouts, so a fault costs seconds, not the defaults' tens of seconds."""
    return {
        "behaviour": {"reply_timeout_s": 1.5, "conversation_timeout_s": 1.0},
        "live": {"setup_timeout_s": 1.5, "reconnect_max_delay_s": 1.0},
    }


@dataclass
class Sample:
    turn: int
    rss_kb: int
    fds: int
    tasks: int
    threads: int
    native_threads: int


def sample(turn: int) -> Sample:
    status = Path("/proc/self/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    native = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return Sample(
        turn=turn,
        rss_kb=rss,
        fds=len(os.listdir("/proc/self/fd")),
        tasks=len(asyncio.all_tasks()),
        threads=threading.active_count(),
        native_threads=native,
    )


@dataclass
class SoakResult:
    turns: int = 0
    typed: int = 0
    spoken: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    ended: collections.Counter[str] = field(default_factory=collections.Counter)
    answered: int = 0
    samples: list[Sample] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    leaked_bytes: int = 0
    stuck: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slowest_turn_s: float = 0.0
    grown: list[str] = field(default_factory=list)
    """With `trace_memory`: where Python memory grew from warm-up to the end, biggest first."""
    out_of_time: bool = False
    """The run stopped at its time budget (`--max-minutes`) before all its turns."""

    @property
    def warm(self) -> Sample:
        """The sample after warm-up (the second one: imports and first sessions done)."""
        return self.samples[1] if len(self.samples) > 2 else self.samples[0]


def memory_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> list[str]:
    """The biggest growths by the first frame outside the standard library."""
    lines = []
    for stat in after.compare_to(before, "traceback")[:200]:
        if stat.size_diff < 64 * 1024:
            continue
        frames = [f for f in stat.traceback if "/python3." not in f.filename] or list(
            stat.traceback
        )
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[:3])
        lines.append(f"{stat.size_diff / 1024:+.0f} KiB ({stat.count_diff:+d} blocks) {where}")
    return lines[:15]


class PrivacyCheck:
    """Checks the records that arrived since the last check against the state timeline
    from shortly before them (checking a 2000-turn timeline in full each time would be
    quadratic); `running_appliance` checks everything once more at the end."""

    def __init__(self, running: Running, recorder: Recorder) -> None:
        self.running = running
        self.recorder = recorder
        self.since_ns = 0

    def check(self, result: SoakResult) -> None:
        from tests.rig.privacy import GRACE_NS, MEDIA, PrivacyWatch

        watch = self.running.privacy
        now = time.monotonic_ns()
        arrived = self.recorder.of(MEDIA, since_ns=self.since_ns)
        recent = [r for r in arrived if r.t_ns <= now - GRACE_NS]
        # The timeline from the last state change a window covering these could start at.
        timeline = list(watch.timeline)
        before = [i for i, (t, _) in enumerate(timeline) if t <= self.since_ns - GRACE_NS]
        part = PrivacyWatch(timeline[before[-1] if before else 0 :], watch.started_ns)
        for line in part.violations(_Records(recent)):  # type: ignore[arg-type]
            result.leaks.append(line)
            found = re.search(r"\((\d+) bytes\)", line)
            result.leaked_bytes += int(found.group(1)) if found else 0
        self.since_ns = now - GRACE_NS


@dataclass
class _Records:
    records: list[Any]

    def of(self, kinds: Any) -> list[Any]:
        return self.records


async def soak(
    jack: JackAudio,
    emu: Emulator,
    tmp: Path,
    *,
    turns: int,
    seed: int,
    fault_rate: float = 0.2,
    spoken_rate: float = 0.25,
    check_every: int = 50,
    max_s: float | None = None,
    progress: Callable[[str], None] | None = None,
    on_check: Callable[[SoakResult], None] | None = None,
    frozen_s: float | None = None,
    trace_memory: bool = False,
) -> SoakResult:
    """Run the soak; the result says what happened (the caller judges it)."""
    from tests.rig.appliance import call, control, running_appliance, speech_48k

    rng = random.Random(seed)
    voice = speech_48k(0.5)
    result = SoakResult()
    normal = emu.scenario.default_reply
    tool_reply = Reply(tool_call=ToolCallSpec("get_local_time"), after_tool=normal)
    started = time.monotonic()
    async with running_appliance(jack, emu, tmp, **sections()) as r:
        privacy = PrivacyCheck(r, emu.recorder)
        result.samples.append(sample(0))
        for n in range(1, turns + 1):
            if max_s is not None and time.monotonic() - started > max_s:
                result.out_of_time = True
                result.samples.append(sample(result.turns))
                break
            injection = rng.choice(INJECTIONS) if rng.random() < fault_rate else None
            spoken = rng.random() < spoken_rate
            emu.scenario.faults = []
            emu.scenario.output_mime = None
            emu.scenario.default_reply = normal
            if injection is not None:
                result.faults[injection.name] += 1
                emu.scenario.output_mime = injection.mime
                if injection.kind is not None:
                    conn = len(emu.connections) + 1
                    turn = 1 if injection.at_turn else None
                    emu.scenario.faults = [Fault(injection.kind, connection=conn, turn=turn)]
                    if injection.tool:
                        emu.scenario.default_reply = tool_reply
            t0 = time.monotonic()
            what = f"turn {n} ({'spoken' if spoken else 'typed'}, fault"
            what += f" {injection.name if injection else None})"
            try:
                end = await one_turn(r, jack, voice, spoken)
                status = await call(control(r).status)  # the daemon is up and answers
            except TimeoutError:
                result.stuck.append(f"{what}: no rest within {TURN_BOUND_S:g} s: {r.states[-8:]}")
                break
            except OSError as e:  # the control socket is gone: the daemon died
                result.stuck.append(f"{what}: status failed: {e}")
                break
            if status["state"] != end:
                result.stuck.append(f"{what}: ended {end} but status says {status['state']}")
            took = time.monotonic() - t0
            result.slowest_turn_s = max(result.slowest_turn_s, took)
            result.turns = n
            result.spoken += spoken
            result.typed += not spoken
            result.ended[end] += 1
            if n % check_every == 0 or n == turns:
                if trace_memory and len(result.samples) == 1:  # from the warm-up on
                    tracemalloc.start(8)
                    traced = tracemalloc.take_snapshot()
                result.samples.append(sample(n))
                privacy.check(result)
                result.seconds = time.monotonic() - started
                if on_check is not None:
                    on_check(result)
                if progress is not None:
                    s = result.samples[-1]
                    progress(
                        f"turn {n}: rss {s.rss_kb / 1024:.1f} MB, fds {s.fds}, tasks {s.tasks},"
                        f" threads {s.threads}/{s.native_threads},"
                        f" {time.monotonic() - started:.0f} s"
                    )
        if frozen_s is not None:
            faulthandler.cancel_dump_traceback_later()
        if trace_memory and tracemalloc.is_tracing():
            result.grown = memory_growth(traced, tracemalloc.take_snapshot())
            tracemalloc.stop()
        # After the last turn: give any in-flight audio time to arrive, then check it all.
        await asyncio.sleep(1.2)
        privacy.check(result)
    result.seconds = time.monotonic() - started
    return result


async def one_turn(r: Running, jack: JackAudio, voice: Any, spoken: bool) -> str:
    """One short turn; the resting state it ended in. Raises TimeoutError if stuck."""
    after = len(r.states)
    r.app.post(Press() if spoken else Ask("soak"))
    played = stopped = False
    async with asyncio.timeout(TURN_BOUND_S):
        while True:
            await asyncio.sleep(0.02)
            if len(r.states) <= after:
                continue
            seen = r.states[after:]
            state = seen[-1]
            if state in RESTING and len(seen) >= 2:  # it left the resting state and came back
                await asyncio.sleep(0.1)
                if r.states[-1] == state:
                    return state
                continue
            if spoken and state == "listening":
                if not played and "speaking" not in seen:
                    jack.rig.play(voice)
                    played = True
                elif "speaking" in seen and not stopped:
                    r.app.post(Stop())  # the reply is done: end it, as a second press
                    stopped = True


def report(result: SoakResult, command: str, *, partial: bool = False) -> str:
    """The figures as markdown (`partial`: written at each check, in case the run dies)."""
    first, warm, last = result.samples[0], result.warm, result.samples[-1]
    per_min = result.turns / (result.seconds / 60) if result.seconds else 0.0
    faulted = sum(result.faults.values())
    lines = [
        "# Soak: the daemon for many short turns with Live faults at random",
        "",
        *(["**Partial: written during the run, at its last check.**", ""] if partial else []),
        f"Command: `{command}` (the daemon in the measuring process on the JACK",
        "dummy rig, the real google-genai SDK; the TLS Live emulator in a process of its own;",
        "short replies, short timeouts). Figures from one run on the shared 2-core dev",
        "machine, under load.",
        "",
        "| | |",
        "|---|---|",
        f"| turns | {result.turns} ({result.typed} typed, {result.spoken} spoken)"
        + (" (stopped at the time budget)" if result.out_of_time else "")
        + " |",
        f"| with a fault | {faulted} |",
        f"| ended idle / error | {result.ended['idle']} / {result.ended['error']} |",
        f"| stuck or crashed | {len(result.stuck)} |",
        f"| wall time | {result.seconds:.0f} s ({per_min:.0f} turns per minute) |",
        f"| slowest turn | {result.slowest_turn_s:.1f} s |",
        f"| bytes leaked (media outside a conversation) | {result.leaked_bytes} |",
        "",
        "| | start | after warm-up (turn " + str(warm.turn) + ") | end (turn "
        f"{last.turn}) | growth warm-up to end |",
        "|---|---|---|---|---|",
        f"| RSS | {first.rss_kb / 1024:.1f} MB | {warm.rss_kb / 1024:.1f} MB"
        f" | {last.rss_kb / 1024:.1f} MB | {(last.rss_kb - warm.rss_kb) / 1024:+.1f} MB |",
        f"| open fds | {first.fds} | {warm.fds} | {last.fds} | {last.fds - warm.fds:+d} |",
        f"| asyncio tasks | {first.tasks} | {warm.tasks} | {last.tasks}"
        f" | {last.tasks - warm.tasks:+d} |",
        f"| Python threads | {first.threads} | {warm.threads} | {last.threads}"
        f" | {last.threads - warm.threads:+d} |",
        f"| native threads | {first.native_threads} | {warm.native_threads}"
        f" | {last.native_threads} | {last.native_threads - warm.native_threads:+d} |",
        "",
        "Faults injected (each armed for the next turn's connection):",
        "",
        "| fault | turns |",
        "|---|---|",
        *[f"| {name} | {count} |" for name, count in sorted(result.faults.items())],
        "",
        "RSS by turn (MB): "
        + ", ".join(f"{s.turn}: {s.rss_kb / 1024:.1f}" for s in result.samples),
        "",
        "Open fds by turn: " + ", ".join(f"{s.turn}: {s.fds}" for s in result.samples),
    ]
    if result.stuck:
        lines += ["", "Stuck:", *[f"- {s}" for s in result.stuck]]
    if result.grown:
        lines += ["", "Python memory grown from warm-up to end (tracemalloc):", ""]
        lines += [f"- {line}" for line in result.grown]
    if result.leaks:
        lines += ["", "Leaks:", *[f"- {s}" for s in result.leaks[:20]]]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> SoakResult:
    from tests.rig.gpio import mock_pins
    from tests.rig.jack import JackAudio, jack_available, jack_rig, rig_alsa_config

    why = jack_available()
    if why:
        raise SystemExit(f"soak: {why}")
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (server, rig), mock_pins():
        os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp) / "alsa").write())
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        jack = JackAudio(server, rig, Path(os.environ["ALSA_CONFIG_PATH"]))
        jack.reset()
        from tests.rig.emulator_process import EmulatorProcess

        with EmulatorProcess(scenario(), records_kept=RECORDS_KEPT) as emu:
            return await soak(
                jack,
                emu,  # type: ignore[arg-type]
                Path(tmp),
                turns=args.turns,
                seed=args.seed,
                fault_rate=args.fault_rate,
                check_every=args.check_every,
                max_s=args.max_minutes * 60 if args.max_minutes else None,
                on_check=lambda result: args.out.write_text(
                    report(result, command(args), partial=True)
                ),
                frozen_s=TURN_BOUND_S * 2,
                trace_memory=args.trace_memory,
                progress=lambda line: print(line, flush=True),
            )


def command(args: argparse.Namespace) -> str:
    line = f".venv/bin/python bench/soak.py --turns {args.turns} --seed {args.seed}"
    line += f" --fault-rate {args.fault_rate:g}"
    line += f" --max-minutes {args.max_minutes:g}" if args.max_minutes else ""
    return line + (" --trace-memory" if args.trace_memory else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--check-every", type=int, default=25)
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="stop after this long (say so)"
    )
    parser.add_argument(
        "--trace-memory", action="store_true", help="tracemalloc: where memory grows"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/soak.md")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = report(result, command(args))
    args.out.write_text(text)
    print(text)
    bad = result.stuck or result.leaked_bytes
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
