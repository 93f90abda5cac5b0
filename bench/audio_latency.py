"""Audio engine benchmark on the paced JACK dummy rig (not a test: it reports numbers).

    .venv/bin/python bench/audio_latency.py [--seconds 20] [--trials 12] [--json FILE]

Starts a private JACK dummy server (48 kHz, 10 ms blocks) and the rig client, which
plays a 610 Hz tone into `rigmic` and records `rigspk` on the JACK clock. Then, each
workload in its own child process so CPU times are not mixed:

- bare-capture / bare-duplex (the calibration): plain pyalsaaudio loops that only read
  `rigmic` (16 kHz mono, 20 ms periods) and also write `rigspk` (24 kHz); the rig's own
  cost (the jack plugin's resampling and its threads) lands in every process, so the
  engine is compared with these, not with zero;
- floor-duplex (a second calibration): the bare-duplex loop in a thread, plus what any
  asyncio daemon pays whatever its audio engine: the same fake "network" task as the
  duplex workload (40 ms reply chunks at real-time pace, fed to the bare loop through a
  deque) and one `call_soon_threadsafe` hand-off of each mic period to a coroutine;
- idle: the engine's Capture running with no stream open (pre-roll ring only);
- duplex: Capture with a stream consumed as a conversation would, and Playback fed
  40 ms reply chunks at real-time pace, at the default 80 % software volume;

and, in this process (it needs the rig's clock), stop trials: a reply is playing, stop()
is called, and the frames of sound the rig recorded after that JACK frame are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.audio.timing import percentile  # noqa: E402
from appliance.config import AudioConfig  # noqa: E402

WARMUP_S = 1.0
MODES = ("bare-capture", "idle", "bare-duplex", "floor-duplex", "duplex")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each thread of this process (Linux), by native thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def ms_stats(values_ns: list[int]) -> dict[str, float]:
    return {
        "n": len(values_ns),
        "p50_ms": round(percentile(values_ns, 50) / 1e6, 3),
        "p99_ms": round(percentile(values_ns, 99) / 1e6, 3),
        "max_ms": round(max(values_ns) / 1e6, 3) if values_ns else float("nan"),
    }


# --- workers (child processes) -------------------------------------------------------


def worker_bare(seconds: float, duplex: bool) -> dict[str, Any]:
    import alsaaudio as a

    cap = a.PCM(type=a.PCM_CAPTURE, rate=16000, channels=1, format=a.PCM_FORMAT_S16_LE,
                periodsize=320, periods=4, device="rigmic")  # fmt: skip
    spk = None
    out = bytes(960)
    if duplex:
        spk = a.PCM(type=a.PCM_PLAYBACK, rate=24000, channels=1, format=a.PCM_FORMAT_S16_LE,
                    periodsize=480, periods=3, device="rigspk")  # fmt: skip
        spk.write(out)
        spk.write(out)
    end_warm = time.monotonic() + WARMUP_S
    while time.monotonic() < end_warm:
        cap.read()
        if spk:
            spk.write(out)
    c0, t0 = cpu_s(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        cap.read()
        if spk:
            spk.write(out)
    c1, t1 = cpu_s(), time.monotonic()
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0}


async def worker_floor(seconds: float) -> dict[str, Any]:
    """The bare duplex loop in a thread + the fake network task + a per-period hand-off."""
    from collections import deque

    import alsaaudio as a

    loop = asyncio.get_running_loop()
    periods: deque[bytes] = deque()  # reply audio for the bare loop, one period each
    stop = threading.Event()
    received = 0
    waiter: list[asyncio.Future[None]] = []

    def handed(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if waiter and not waiter[0].done():
            waiter.pop().set_result(None)

    def bare() -> None:
        cap = a.PCM(type=a.PCM_CAPTURE, rate=16000, channels=1, format=a.PCM_FORMAT_S16_LE,
                    periodsize=320, periods=4, device="rigmic")  # fmt: skip
        spk = a.PCM(type=a.PCM_PLAYBACK, rate=24000, channels=1, format=a.PCM_FORMAT_S16_LE,
                    periodsize=480, periods=3, device="rigspk")  # fmt: skip
        silence = bytes(960)
        spk.write(silence)
        spk.write(silence)
        while not stop.is_set():
            _, data = cap.read()
            loop.call_soon_threadsafe(handed, data)
            spk.write(periods.popleft() if periods else silence)
        cap.close()
        spk.close()

    async def consume() -> None:
        while True:
            fut = loop.create_future()
            waiter.append(fut)
            await fut

    async def produce() -> None:
        async for chunk in paced_reply_chunks():
            periods.append(chunk[:960])
            periods.append(chunk[960:])

    thread = threading.Thread(target=bare, name="bare", daemon=True)
    thread.start()
    tasks = [asyncio.create_task(consume()), asyncio.create_task(produce())]
    await asyncio.sleep(WARMUP_S)
    c0, t0 = cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, t1 = cpu_s(), time.monotonic()
    for task in tasks:
        task.cancel()
    stop.set()
    await asyncio.to_thread(thread.join)
    return {"cpu_s": c1 - c0, "wall_s": t1 - t0, "mic_bytes": received}


async def paced_reply_chunks() -> AsyncIterator[bytes]:
    """The fake network: 40 ms reply chunks (24 kHz S16_LE) at real-time pace, forever.

    The emulator's default chunk; the Live API sends 40-100 ms. One loop wake-up per
    chunk, as a websocket message would cost (the daemon pays it with any engine).
    """
    import numpy as np

    t = np.arange(960) / 24000
    chunks = [
        (np.sin(2 * np.pi * 610 * (t + k * 0.04)) * 12000).astype("<i2").tobytes()
        for k in range(25)
    ]
    k = 0
    next_t = time.monotonic()
    while True:
        yield chunks[k % len(chunks)]
        k += 1
        next_t += 0.04
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))


async def worker_engine(seconds: float, duplex: bool) -> dict[str, Any]:

    from appliance.audio.capture import Capture
    from appliance.audio.devices import DeviceState
    from appliance.audio.playback import Playback
    from appliance.audio.timing import AudioStamps
    from appliance.audio.volume import Volume

    config = AudioConfig(capture_device="rigmic", playback_device="rigspk")
    stamps = AudioStamps()
    capture = Capture(config, stamps=stamps)
    await capture.start()
    playback = None
    if duplex:
        playback = Playback(config, volume=Volume(config), stamps=stamps)
        await playback.start()
    deadline = time.monotonic() + 10
    while capture.state != DeviceState.OK or (playback and playback.state != DeviceState.OK):
        if time.monotonic() > deadline:
            raise RuntimeError(f"devices did not open: {capture.error} {playback}")
        await asyncio.sleep(0.05)

    received = 0

    async def consume() -> None:
        nonlocal received
        async with capture.open_stream() as stream:
            async for period in stream:
                received += len(period.pcm)

    async def produce() -> None:
        assert playback is not None
        async for chunk in paced_reply_chunks():
            playback.enqueue(chunk, time.monotonic_ns())

    tasks = []
    if duplex:
        only = os.environ.get("BENCH_ONLY")  # profiling aid: "consume" or "produce"
        if only != "produce":
            tasks.append(asyncio.create_task(consume()))
        if only != "consume":
            tasks.append(asyncio.create_task(produce()))
    await asyncio.sleep(WARMUP_S)
    stamps.capture_to_handoff.clear()
    stamps.receive_to_write.clear()
    stamps.write_delay.clear()
    c0, t0, th0 = cpu_s(), time.monotonic(), thread_cpu_s()
    await asyncio.sleep(seconds)
    c1, t1, th1 = cpu_s(), time.monotonic(), thread_cpu_s()
    names = {threading.get_native_id(): "asyncio loop"}
    for thread in threading.enumerate():
        if thread.native_id is not None and thread.name.startswith("audio-"):
            names[thread.native_id] = thread.name
    per_thread: dict[str, float] = {}
    for tid, spent in th1.items():
        name = names.get(tid, "libjack/alsa plugin threads")
        per_thread[name] = round(per_thread.get(name, 0.0) + spent - th0.get(tid, 0.0), 3)
    for task in tasks:
        task.cancel()
    result: dict[str, Any] = {"cpu_s": c1 - c0, "wall_s": t1 - t0, "threads": per_thread}
    result["overruns"] = capture.overruns.total
    if duplex and playback is not None:
        result["capture_to_handoff"] = stamps.capture_to_handoff.durations_ns()
        result["receive_to_write"] = stamps.receive_to_write.durations_ns()
        result["write_delay"] = stamps.write_delay.durations_ns()
        result["underruns"] = playback.underruns.total
        result["mic_bytes"] = received
        await playback.close()
    await capture.stop()
    return result


def run_worker(mode: str, seconds: float, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--seconds", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"worker {mode} failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


# --- stop trials (this process, on the rig clock) -------------------------------------


async def stop_trials(rig: Any, trials: int) -> dict[str, Any]:
    import numpy as np

    from appliance.audio.devices import DeviceState
    from appliance.audio.fakes import eventually
    from appliance.audio.playback import Playback
    from appliance.audio.volume import Volume

    config = AudioConfig(playback_device="rigspk", volume=100)
    playback = Playback(config, volume=Volume(config))
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK, within_s=10)
    t = np.arange(24000 * 3) / 24000
    reply = (np.sin(2 * np.pi * 610 * t) * 16000).astype("<i2").tobytes()
    after_ms: list[float] = []
    for _ in range(trials):
        rig.start_recording()
        for i in range(0, len(reply), 1920):
            playback.enqueue(reply[i : i + 1920])
        await asyncio.sleep(random.uniform(0.3, 0.8))
        stop_frame = rig.frame_time
        await playback.stop()
        await asyncio.sleep(0.25)
        last = rig.last_sound_frame()
        rig.stop_recording()
        after_ms.append(max(0, (last or stop_frame) - stop_frame) * 1000 / rig.rate)
    calls = playback.stamps.stop_call.durations_ns()
    await playback.close()
    return {
        "stop_to_silence_ms": after_ms,
        "stop_to_silence_p50_ms": percentile(after_ms, 50),
        "stop_to_silence_max_ms": max(after_ms),
        "stop_call": ms_stats(calls),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per CPU workload")
    parser.add_argument("--trials", type=int, default=12, help="stop-to-silence trials")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "floor-duplex":
            result = asyncio.run(worker_floor(args.seconds))
        elif args.worker.startswith("bare"):
            result = worker_bare(args.seconds, duplex=args.worker == "bare-duplex")
        else:
            result = asyncio.run(worker_engine(args.seconds, duplex=args.worker == "duplex"))
        print(json.dumps(result))
        return 0

    from tests.rig.jack import jack_available, jack_rig, rig_alsa_config, tone

    why = jack_available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (_server, rig):
        conf = rig_alsa_config(Path(tmp)).write()
        os.environ["ALSA_CONFIG_PATH"] = str(conf)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        rig.play(tone(610, 10.0, level=0.3), loop=True)
        for mode in MODES:
            print(f"running {mode} for {args.seconds:.0f} s ...", file=sys.stderr)
            results[mode] = run_worker(mode, args.seconds, env)
        print(f"running {args.trials} stop trials ...", file=sys.stderr)
        results["stop"] = asyncio.run(stop_trials(rig, args.trials))

    def per_min(mode: str) -> float:
        r = results[mode]
        return float(r["cpu_s"] / r["wall_s"] * 60)

    duplex = results["duplex"]
    summary = {
        "capture_to_handoff": ms_stats(duplex["capture_to_handoff"]),
        "receive_to_write": ms_stats(duplex["receive_to_write"]),
        "write_delay": ms_stats(duplex["write_delay"]),
        "stop_to_silence_ms": {
            "p50": results["stop"]["stop_to_silence_p50_ms"],
            "p99": percentile(results["stop"]["stop_to_silence_ms"], 99),
            "max": results["stop"]["stop_to_silence_max_ms"],
        },
        "stop_call": results["stop"]["stop_call"],
        "cpu_s_per_min": {m: round(per_min(m), 3) for m in MODES},
        "duplex_vs_bare": round(per_min("duplex") / per_min("bare-duplex"), 3),
        "duplex_vs_floor": round(per_min("duplex") / per_min("floor-duplex"), 3),
        "idle_minus_bare_capture_pct_core": round(
            (per_min("idle") - per_min("bare-capture")) / 60 * 100, 3
        ),
        "xruns": {
            "capture_overruns": duplex["overruns"],
            "playback_underruns": duplex["underruns"],
        },
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "raw": results}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
