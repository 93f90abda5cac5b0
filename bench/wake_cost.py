"""The CPU cost of the wake word (not a test: it reports numbers).

    .venv/bin/python bench/wake_cost.py [--seconds 20] [--trials 3] [--model okay_nabu]
        [--audio-seconds 10] [--skip-idle] [--skip-callgrind] [--json FILE]

(a) Idle CPU with the wake word off and on, on the paced JACK dummy rig of
bench/audio_latency.py (its private server and `rig` client, from tests/rig/jack.py;
the rig plays ordinary espeak-ng speech, no wake word, into `rigmic` in a loop). Each
workload runs in its own child process: the real `appliance.audio.capture.Capture` on
`rigmic` with no stream open (idle batches of 5 periods), either with no tap ("off",
the daemon with `[wake] enabled = false`: the detector is not even imported), or with
a `WakeListener` tap (listening) around a real `MicroWakeWordDetector` and the daemon's
1 s capture ring ("on"). After a 1 s warm-up, process CPU time (getrusage, all threads:
the jack plugin's threads too) and the capture thread's own CPU time are taken over
`--seconds` of wall time. Off and on alternate for `--trials` rounds; the report gives
the median % of one core of each, their ratio and difference. The rig's own cost lands
in every process and varies run to run on this VM, so only on vs off in one run means
anything; the capture thread's share is the cleaner number.

(b) Instructions per second of audio under valgrind's callgrind (apt-get install -y
valgrind). The same child script (`--feed`) imports the wake word module, loads the
model, reads a 16 kHz raw file, scores 10 periods to warm up (first calls into numpy and
TFLite; done in every run) and feeds `--audio-seconds` of the file through
`MicroWakeWordDetector.score` in batches of five 20 ms periods, as the capture thread
does; the run with 0 s of audio (the setup only, same script) is subtracted and the
rest divided by the seconds of audio. Two inputs: digital silence and espeak-ng speech
(no wake word). Callgrind counts the instructions the work executes, not time spent
sleeping, and the count repeats run to run. OPENBLAS_NUM_THREADS=1 for these runs:
numpy's idle BLAS threads otherwise add polling that is not the wake word's work (it
never calls BLAS). The Pi Zero 2 W estimate follows shared/notes/test-rig.md: a
Cortex-A53 at 1 GHz retires roughly 0.5-0.8 instructions per cycle on this kind of code,
so instructions / 0.6e9 is seconds of one core (range given for 0.8e9 and 0.5e9). The
instructions are also split by the object that executed them (interpreter, TFLite,
numpy, the feature frontend, libc ...).

The same feed is also timed natively here (process CPU time of the feed loop), once
unpaced and once paced: sleeping 100 ms after each batch as the idle capture thread
does. Instructions do not show what a sleep costs the next batch (cold caches, CPU
wake-up); the paced figure does, on this VM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from audio_latency import WARMUP_S, cpu_s, thread_cpu_s  # noqa: E402

PERIOD_BYTES = 640  # 20 ms of 16 kHz mono S16_LE
BATCH = 5  # periods per idle batch
PI_IPS = (0.8e9, 0.6e9, 0.5e9)  # Pi Zero 2 W instructions per second: optimistic, mid, low
GOAL_PCT = 5.0
WARMUP_PERIODS = 10  # fed before the measured part in every feed run, 0 s included

SPEECH = (
    "The city council voted on Tuesday to extend the bus lanes on the main road.",
    "Can you pass me the salt, please?",
    "Heavy rain is expected across the north of the country over the weekend.",
    "Have you seen my keys anywhere? I left them on the table.",
    "The museum reopens next week after a three year renovation.",
    "We need to leave at eight if we want to catch the train.",
)
VOICES = ("en-us", "en-gb-x-rp", "en+f3")


def speech_raw(rate: int, encoding: list[str]) -> bytes:
    """The SPEECH sentences in turn by VOICES, with short pauses, as raw audio."""
    parts = []
    for i, text in enumerate(SPEECH):
        wav = subprocess.run(
            ["espeak-ng", "-v", VOICES[i % len(VOICES)], "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        cmd = ["sox", "-R", "-t", "wav", "-", "-r", str(rate), "-c", "1", *encoding]
        cmd += ["-t", "raw", "-", "pad", "0", "0.4"]
        parts.append(subprocess.run(cmd, input=wav, capture_output=True, check=True).stdout)
    return b"".join(parts)


# --- (a) idle CPU on the rig, one child process per workload ----------------------------


async def worker_idle(seconds: float, model: str, wake: bool) -> dict[str, Any]:
    from appliance.audio.capture import Capture
    from appliance.audio.devices import DeviceState
    from appliance.config import AudioConfig

    config = AudioConfig(capture_device="rigmic", playback_device="rigspk")
    fed = [0]
    listener = None
    if wake:
        from appliance.voice.hands_free import RING_MS
        from appliance.voice.wake import MicroWakeWordDetector, WakeListener

        capture = Capture(config, ring_ms=RING_MS)
        detections: list[Any] = []
        listener = WakeListener(
            MicroWakeWordDetector(model), detections.append, loop=asyncio.get_running_loop()
        )

        def tap(periods: Any) -> None:
            fed[0] += len(periods)
            listener(periods)

        capture.add_tap(tap)
    else:
        capture = Capture(config)
    await capture.start()
    deadline = time.monotonic() + 10
    while capture.state != DeviceState.OK:
        if time.monotonic() > deadline:
            raise RuntimeError(f"capture did not open: {capture.error}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(WARMUP_S)
    read0, fed0 = capture.periods_read, fed[0]
    c0, t0, th0 = cpu_s(), time.monotonic(), thread_cpu_s()
    await asyncio.sleep(seconds)
    c1, t1, th1 = cpu_s(), time.monotonic(), thread_cpu_s()
    capture_ids = {
        t.native_id for t in threading.enumerate() if t.name == "audio-capture" and t.native_id
    }
    capture_cpu = sum(th1[i] - th0.get(i, 0.0) for i in capture_ids if i in th1)
    result = {
        "cpu_s": c1 - c0,
        "wall_s": t1 - t0,
        "capture_thread_cpu_s": capture_cpu,
        "periods_read": capture.periods_read - read0,
        "periods_scored": fed[0] - fed0,
        "overruns": capture.overruns.total,
    }
    if listener is not None:
        result["detections"] = listener.detections
        result["top_score"] = listener.top_score
        result["tap_alive"] = bool(capture._taps)
    await capture.stop()
    return result


def run_child(args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"child {args} failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def idle_cpu(seconds: float, trials: int, model: str) -> dict[str, Any]:
    import numpy as np

    from tests.rig.jack import jack_available, jack_rig, rig_alsa_config

    why = jack_available()
    if why:
        return {"skipped": why}
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (_server, rig):
        conf = rig_alsa_config(Path(tmp)).write()
        env = dict(os.environ, ALSA_CONFIG_PATH=str(conf), PYTHONPATH=str(ROOT))
        speech = speech_raw(rig.rate, ["-b", "32", "-e", "floating-point"])
        rig.play(np.frombuffer(speech, dtype=np.float32) * 0.5, loop=True)
        for trial in range(trials):
            for mode in ("off", "on"):
                print(f"  idle {mode}, trial {trial + 1}/{trials} ...", file=sys.stderr)
                args = ["--idle-worker", mode, "--seconds", str(seconds), "--model", model]
                runs[mode].append(run_child(args, env, seconds + 60))

    def pct(r: dict[str, Any], key: str) -> float:
        return 100 * float(r[key]) / float(r["wall_s"])

    summary: dict[str, Any] = {"seconds": seconds, "trials": trials, "model": model}
    for mode, rs in runs.items():
        summary[mode] = {
            "process_pct": [round(pct(r, "cpu_s"), 3) for r in rs],
            "capture_thread_pct": [round(pct(r, "capture_thread_cpu_s"), 3) for r in rs],
            "median_process_pct": round(statistics.median(pct(r, "cpu_s") for r in rs), 3),
            "median_capture_thread_pct": round(
                statistics.median(pct(r, "capture_thread_cpu_s") for r in rs), 3
            ),
        }
    off, on = summary["off"], summary["on"]
    summary["ratio_process"] = round(on["median_process_pct"] / off["median_process_pct"], 3)
    summary["on_minus_off_process_pct"] = round(
        on["median_process_pct"] - off["median_process_pct"], 3
    )
    summary["on_minus_off_capture_thread_pct"] = round(
        on["median_capture_thread_pct"] - off["median_capture_thread_pct"], 3
    )
    summary["raw"] = runs
    return summary


# --- (b) instructions per second of audio ---------------------------------------------


def worker_feed(path: Path, seconds: float, model: str, pace: bool) -> dict[str, Any]:
    """Imports, model load and a warm-up on the file's first WARMUP_PERIODS (in every
    run), then `seconds` of `path` from its start through score(), batch by batch
    (`pace`: sleeping a batch's duration after each, as the idle capture thread does)."""
    from appliance.voice.wake import MicroWakeWordDetector

    audio = path.read_bytes()
    detector = MicroWakeWordDetector(model)
    n = int(seconds * 50)
    while len(audio) < max(n, WARMUP_PERIODS) * PERIOD_BYTES:
        audio += audio
    periods = [audio[i * PERIOD_BYTES : (i + 1) * PERIOD_BYTES] for i in range(n)]
    for i in range(WARMUP_PERIODS):  # first calls into numpy and TFLite
        detector.score(audio[i * PERIOD_BYTES : (i + 1) * PERIOD_BYTES])
    top = 0.0
    c0 = time.process_time()
    for b in range(0, n, BATCH):
        for pcm in periods[b : b + BATCH]:
            score = detector.score(pcm)
            if score > top:
                top = score
        if pace:
            time.sleep(BATCH * 0.02)
    spent = time.process_time() - c0
    detector.close()
    return {"seconds": seconds, "periods": n, "feed_cpu_s": spent, "top_score": top}


def callgrind(path: Path, seconds: float, model: str, out: Path) -> dict[str, int]:
    """Instructions executed by the feed child under callgrind, in all and by object."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    cmd += [__file__, "--feed", str(path), "--audio-seconds", str(seconds), "--model", model]
    # numpy's OpenBLAS starts idle worker threads that poll for work; the wake word never
    # calls BLAS, but under callgrind's one-thread-at-a-time scheduling their polling
    # adds a run-length-dependent count (seen: 8 M per second of audio in a 1 s run).
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    found = re.findall(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode or not found:
        raise RuntimeError(f"callgrind run failed ({run.returncode}): {run.stderr[-2000:]}")
    counts = by_object(out)
    counts["total"] = int(found[-1])
    return counts


def by_object(path: Path) -> dict[str, int]:
    """Self instructions per ELF object (shared library) in a callgrind output file."""
    names: dict[str, str] = {}
    cost: dict[str, int] = {}
    ob = "?"
    skip = False  # the cost line after `calls=` is the call's inclusive cost
    with path.open(errors="replace") as lines:
        for line in lines:
            first = line[:1]
            if first.isdigit() or first in "+-*":
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) > 1:
                    cost[ob] = cost.get(ob, 0) + int(parts[1])
            elif line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=(?:\((\d+)\))?\s*(.*)", line.rstrip("\n"))
                assert m is not None
                key, name = m.group(1), m.group(2)
                if key and name:
                    names[key] = name
                if line.startswith("ob="):
                    ob = Path(names.get(key, name) if key else name).name or "?"
            elif line.startswith("calls="):
                skip = True
    return cost


def instructions(audio_seconds: float, model: str) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind is not installed (apt-get install -y valgrind)"}
    result: dict[str, Any] = {"audio_seconds": audio_seconds, "model": model}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {
            "silence": Path(tmp) / "silence.raw",
            "speech": Path(tmp) / "speech.raw",
        }
        inputs["silence"].write_bytes(bytes(int(audio_seconds * 16000) * 2))
        inputs["speech"].write_bytes(speech_raw(16000, ["-b", "16", "-e", "signed"]))
        result["speech_file_seconds"] = round(inputs["speech"].stat().st_size / 32000, 2)
        print("  callgrind: setup only (0 s of audio) ...", file=sys.stderr)
        base = callgrind(inputs["silence"], 0, model, Path(tmp) / "setup.out")
        result["setup_instructions"] = base["total"]
        for name, path in inputs.items():
            print(f"  callgrind: {audio_seconds:g} s of {name} ...", file=sys.stderr)
            counts = callgrind(path, audio_seconds, model, Path(tmp) / f"{name}.out")
            per_s = (counts["total"] - base["total"]) / audio_seconds
            objects = {
                ob: round((n - base.get(ob, 0)) / audio_seconds)
                for ob, n in counts.items()
                if ob != "total"
            }
            native = {}
            for paced in (False, True):
                args = ["--feed", str(path), "--audio-seconds", str(audio_seconds)]
                args += ["--model", model] + (["--pace"] if paced else [])
                fed = run_child(args, env, 300)
                native["paced" if paced else "unpaced"] = fed
            result[name] = {
                "instructions": counts["total"],
                "instructions_per_audio_s": round(per_s),
                "by_object_per_audio_s": dict(sorted(objects.items(), key=lambda kv: -kv[1])),
                "pi_zero_2w_pct_core": {
                    f"{ips / 1e9:g}e9 instr/s": round(100 * per_s / ips, 2) for ips in PI_IPS
                },
                "x86_native_pct_core": {
                    k: round(100 * v["feed_cpu_s"] / audio_seconds, 3) for k, v in native.items()
                },
                "top_score": round(native["unpaced"]["top_score"], 3),
            }
    return result


# --- report -----------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = []
    idle = results.get("idle")
    if idle and "skipped" not in idle:
        lines += [
            f"Idle CPU, {idle['model']}, {idle['trials']} x {idle['seconds']:g} s per workload "
            "(% of one core here; medians, then every run):",
            "",
            "| workload | process | capture thread | process, each run | capture thread, "
            "each run |",
            "|---|---|---|---|---|",
        ]
        for mode in ("off", "on"):
            m = idle[mode]
            lines.append(
                f"| wake word {mode} | {m['median_process_pct']:.2f} % | "
                f"{m['median_capture_thread_pct']:.2f} % | "
                f"{' '.join(f'{v:.2f}' for v in m['process_pct'])} | "
                f"{' '.join(f'{v:.2f}' for v in m['capture_thread_pct'])} |"
            )
        on_raw = idle["raw"]["on"]
        lines += [
            "",
            f"on / off (process): {idle['ratio_process']:.2f}x; on - off: "
            f"{idle['on_minus_off_process_pct']:+.2f} % of a core (process), "
            f"{idle['on_minus_off_capture_thread_pct']:+.2f} % (capture thread). "
            f"Periods scored per second with the wake word on: "
            + ", ".join(f"{r['periods_scored'] / r['wall_s']:.1f}" for r in on_raw)
            + f"; detections: {sum(r['detections'] for r in on_raw)}.",
        ]
    elif idle:
        lines.append(f"Idle CPU: skipped ({idle['skipped']})")
    ins = results.get("instructions")
    if ins and "skipped" not in ins:
        lines += [
            "",
            f"Instructions (callgrind), {ins['model']}, {ins['audio_seconds']:g} s of audio "
            f"minus setup ({ins['setup_instructions'] / 1e9:.2f} G instructions for imports "
            "and model load):",
            "",
            "| input | instructions per second of audio | Pi Zero 2 W % of one core at "
            "0.8 / 0.6 / 0.5 G instr/s | x86 here, native: unpaced / paced |",
            "|---|---|---|---|",
        ]
        for name in ("silence", "speech"):
            r = ins[name]
            pi = " / ".join(f"{v:.2f}" for v in r["pi_zero_2w_pct_core"].values())
            x86 = r["x86_native_pct_core"]
            lines.append(
                f"| {name} | {r['instructions_per_audio_s'] / 1e6:.2f} M | {pi} % | "
                f"{x86['unpaced']:.2f} / {x86['paced']:.2f} % |"
            )
        lines += ["", "Where the instructions per second of audio go (speech, by object):", ""]
        for ob, n in list(ins["speech"]["by_object_per_audio_s"].items())[:6]:
            share = 100 * n / ins["speech"]["instructions_per_audio_s"]
            lines.append(f"- {ob}: {n / 1e6:.2f} M ({share:.0f} %)")
        lines.append(f"\nGoal: < {GOAL_PCT:g} % of one Pi Zero 2 W core while idle.")
    elif ins:
        lines.append(f"Instructions: skipped ({ins['skipped']})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per idle workload")
    parser.add_argument("--trials", type=int, default=3, help="off/on rounds")
    parser.add_argument("--model", default="okay_nabu")
    parser.add_argument("--audio-seconds", type=float, default=10.0, help="fed under callgrind")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-callgrind", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--idle-worker", choices=("off", "on"), help=argparse.SUPPRESS)
    parser.add_argument("--feed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.idle_worker:
        result = asyncio.run(worker_idle(args.seconds, args.model, args.idle_worker == "on"))
        print(json.dumps(result))
        return 0
    if args.feed:
        print(json.dumps(worker_feed(args.feed, args.audio_seconds, args.model, args.pace)))
        return 0

    results: dict[str, Any] = {}
    if not args.skip_idle:
        print("idle CPU on the JACK rig ...", file=sys.stderr)
        results["idle"] = idle_cpu(args.seconds, args.trials, args.model)
    if not args.skip_callgrind:
        print("instructions under callgrind ...", file=sys.stderr)
        results["instructions"] = instructions(args.audio_seconds, args.model)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
