"""Echo cancellation (WebRTC AEC3 via pywebrtc-audio): how much echo, CPU, memory, barge-in.

    .venv/bin/python bench/echo_cancel.py [--parts erle,cpu,micro,memory,barge]
        [--erle-trials 3] [--replies 3] [--pause-s 1] [--pace 2]
        [--cpu-rounds 3] [--cpu-seconds 20] [--micro-seconds 30] [--pi-factor 8-10]
        [--callgrind] [--callgrind-seconds 10]
        [--barge-trials 10] [--barge-per-daemon 2] [--barge-echo-gain 0.5]
        [--json FILE] [--log FILE]

`--parts` picks what runs (`--parts none --callgrind`: only the instruction count).
Not a test: it reports numbers. Everything that needs sound runs on the paced JACK dummy
rig (tests/rig/jack.py: a private jackd with the dummy backend at 48 kHz in 10 ms
blocks, the `rig` room client in its own process, ALSA `rigmic` / `rigspk` through
alsa-lib's jack plugin), in a room that returns the speaker to the microphone 50 ms
late at half the level with eight reflections over 250 ms (`rig.echo(50, 0.5, 250)`,
as tests/integration/daemon/test_echo_e2e.py). The microphone hears nothing but that
echo (digital silence otherwise: no noise floor, nobody talking) unless said.

The reply is the e2e test's `ANSWER` spoken by espeak-ng through
`appliance.live.emulator.speech.speak` (24 kHz S16_LE, 6.2 s).

1. ERLE (`--parts erle`). Per trial: a fresh canceller exactly as the daemon builds it
   (`open_canceller(AudioConfig(echo_cancel=True))`: AEC3 only, `always=False`), a real
   `Capture` on `rigmic` with `cleaner=` the canceller and a real `Playback` on `rigspk`
   with `reference=` its `EchoReference` and the daemon's volume (80 %, software gain),
   `[audio]` defaults otherwise (20 ms periods, 60 ms jitter cushion). A capture stream
   is open and read throughout (as in a conversation: periods are read one at a time).
   Then `--replies` times: `--pause-s` of nothing, the reply enqueued in 40 ms chunks
   at `--pace` x real time (deadline-paced; the Live API also sends faster than real
   time), `await drain()`. keep_running=True (the daemon's setting while a conversation
   with echo cancellation is open: the speaker runs on silence between replies) or
   False (the speaker stops between replies, a new phase each reply). Trials alternate
   True / False.
   Each period the canceller processes is recorded: its capture stamp, the microphone
   input, the cleaned output, and whether the far end AEC3 was handed for it had any
   non-zero sample ("far end active", the rule of `EchoStats`). ERLE = 10 log10(sum of
   squares in / sum of squares out) over far-end-active periods:
   - "first 2 s": far-end-active periods stamped within 2 s of the first one (the
     canceller's first 2 s of echo: it never heard the far end before);
   - "settled": far-end-active periods stamped 10 s or more after the first one;
   - the first 3 s in 0.5 s steps (how fast it converges);
   - per reply k >= 2: the first 2 s of reply k's far-end-active periods (those stamped
     from its first enqueue on, before the next reply's).
   An ERLE of None means the output was exactly zero throughout (never seen so far).
   Also per trial: `EchoCanceller.status()` (far-end runs, resyncs), playback
   underruns, capture overruns, stream drops, and the input and output level (dBFS).

2. CPU (`--parts cpu`). Full duplex on the rig for `--cpu-seconds`, "on" = the
   canceller as in 1 (keep_running=True, `cleaner=`, `reference=`), "off" = no cleaner,
   no reference, keep_running False (the daemon in full duplex without echo_cancel).
   Same schedule of replies as in 1, repeated for the whole window; nothing recorded.
   Measured from the stream's opening for `--cpu-seconds`: `time.process_time()` (all
   threads of this process: the event loop feeding chunks and reading the stream, the
   capture and playback threads, the jack plugin's threads; the room client is another
   process and not counted) and the capture and playback threads' own utime+stime from
   /proc/self/task/TID/stat (10 ms ticks). `--cpu-rounds` rounds, on/off order
   alternating (on-off, off-on, ...). The difference on - off is taken within each
   round; reported as median and min..max. "% of one core" = CPU seconds / wall seconds.
   Microbenchmark (`--parts micro`): `WebRtcProcessor.process` on 20 ms int16 frames,
   unpaced, `--micro-seconds` of audio per run, 3 runs (fresh processor each, 50
   frames warm-up not counted), process CPU time: (a) speech: far = the reply at 16 kHz
   (`_to_16k`), near = the same through the rig's room model computed at 16 kHz (50 ms,
   0.5, the eight reflections); (b) silence: near and far zeros (far None, as between
   replies with keep_running: the canceller processes every period then); (c) the
   whole path per period, `EchoReference.played()` of 20 ms at 24 kHz plus
   `EchoCanceller.clean()` (reference take, conversion, process, stats), on (a)'s audio.
   Microseconds of CPU per second of audio (= % of one core x 10^4).
   Pi Zero 2 W estimate: x86 CPU here x `--pi-factor` (8-10: the project's rule of thumb
   for this kind of code, a lower bound for numpy / C++ DSP on a Cortex-A53 at 1 GHz).
   With `--callgrind`: instructions of a child processing `--callgrind-seconds` of (a)'s
   audio under `valgrind --tool=callgrind`, minus the same child with 0 s (imports,
   set-up, warm-up), per second of audio, / 0.6e9 instructions per second (a Pi Zero 2
   W core, the project's estimate) as a second estimate. OPENBLAS_NUM_THREADS=1.

3. Memory (`--parts memory`). A fresh child process (no JACK: it maps shared memory and
   inflates RSS), VmRSS from /proc/self/status after: Python; + numpy; + appliance.config
   and appliance.audio.echo (the daemon has both; echo imports nothing heavy); + import
   pywebrtc_audio; + `open_canceller(AudioConfig(echo_cancel=True))`; + 1 s of audio
   through `reference.played()` + `clean()` (speech as in (a)); + 60 s more (a leak
   check). "Added" = the last-but-one minus the appliance.config line. 3 children.

4. Barge-in through the real daemon (`--parts barge`), as test_echo_e2e.py's
   `test_with_echo_cancellation_a_user_talking_over_a_reply_interrupts_it`: the daemon
   (`running_appliance`: real `Appliance`, real ALSA on the rig, the Live emulator over
   TLS, mock pins) with `[behaviour] duplex = "full"`, `conversation_timeout_s = 4`,
   `[audio] echo_cancel = true`, the room echo as above. The emulator answers every turn
   with the reply (think 100 ms, real time). Per daemon: Press, the user asks (the alsa
   Front_Center.wav voice, `speech_48k(0.2)`) once it listens, and then per trial: when
   the daemon enters `speaking`, 2 s later the user talks over the reply
   (`speech_48k(0.5)`), which should interrupt it (-> `listening`); the same voice is
   the next question, so the next reply follows in the same conversation. The first
   trial of a daemon is the canceller's first reply ever; later trials follow a
   barge-in (the speaker was stopped, `Playback.stop()`, and restarted on silence: a new
   far-end run the canceller must align to again). `--barge-per-daemon` trials per
   daemon, `--barge-trials` in all.
   Measured (CLOCK_MONOTONIC): the user's first word = the JACK frame where the voice
   starts + its onset (first sample over 0.02); `interrupted` = the emulator's
   `recorder.sent` stamp of the first `serverContent.interrupted` after that; speaker
   silent = the first JACK block recorded at the rig's `spk` that starts at or after
   `interrupted` and carries no new sound (`rig.sound_frames()`'s rule: silent or a
   repeat of the block before; 10 ms resolution). JACK frames are mapped to monotonic
   time by two (frame_time, monotonic) pairs, the tightest of five round trips each,
   just before the voice and at the end of the trial, interpolated. Targets: user's
   first word -> interrupted within 500 ms, interrupted -> silent within 30 ms.
   Self-interruptions: `interrupted` sent while a reply played before the user started
   talking (a reply cut short by its own echo). Target 0.
   Where the time goes, per trial: the first audio the service received at or after the
   first word (the daemon's voice gate opened and sent; `interrupted` follows when the
   emulator's energy detector has 40 ms of it); around the first word ("Front", 50-260
   ms after the onset) the canceller's input and output (the capture's cleaner wrapped)
   against the voice alone (from the WAV), and its ERLE over the 0.5 s before the user
   spoke. `--barge-echo-gain 0` is the control: the same without any echo in the room.

Notes: the machine is a shared 2-core VM; CPU figures are compared only within a run.
JACK scripts need the `__main__` guard (the room client is spawned).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rig.clock import clock_pair, frame_to_ns  # noqa: E402

ANSWER = (
    "Here is a longer answer, so that the speaker goes on talking for a while, "
    "long enough for the room to hear it."
)
ROOM = {"delay_ms": 50, "gain": 0.5, "reverb_ms": 250}
CHUNK_BYTES = 1920  # 40 ms at 24 kHz, S16_LE
PERIOD_24K_BYTES = 960  # 20 ms at 24 kHz, S16_LE
PERIOD_16K = 320  # 20 ms at 16 kHz
INSTR_PER_S_PI = 0.6e9
GOAL_HEARD_MS = 500.0
GOAL_SILENT_MS = 30.0


# --- shared helpers ------------------------------------------------------------------


def reply_pcm() -> bytes:
    from appliance.live.emulator.speech import speak

    pcm = speak(ANSWER)
    return pcm[: len(pcm) // 6 * 6]  # whole groups of 3 samples (for _to_16k)


def room_16k(far: Any) -> Any:
    """The rig's room (appliance.demo.room `set_echo`) applied at 16 kHz: float64."""
    import numpy as np

    rate, delay_ms, gain, reverb_ms = 16_000, ROOM["delay_ms"], ROOM["gain"], ROOM["reverb_ms"]
    taps = [(delay_ms * rate // 1000, float(gain))]
    for k, after_ms in enumerate((7, 13, 23, 37, 53, 79, 113, 160)):
        at = after_ms * reverb_ms / 160
        taps.append(
            (
                taps[0][0] + int(at * rate / 1000),
                gain * 0.6 * 10 ** (-3 * at / reverb_ms) * (-1) ** k,
            )
        )
    x = far.astype(np.float64)
    out = np.zeros(len(x) + max(d for d, _ in taps))
    for d, g in taps:
        out[d : d + len(x)] += g * x
    return out[: len(x)]


def test_audio(seconds: float) -> tuple[Any, Any, bytes]:
    """(near, far) int16 at 16 kHz and the 24 kHz reply they came from, `seconds` long
    (the reply repeated, 1 s of silence between repeats)."""
    import numpy as np

    from appliance.audio.echo import _to_16k

    pcm = reply_pcm() + bytes(2 * 24_000)
    reps = max(1, math.ceil(seconds * 48_000 / len(pcm)))
    played = (pcm * reps)[: int(seconds * 24_000) // 3 * 3 * 2]
    far = np.frombuffer(_to_16k(played), dtype="<i2")
    near = np.clip(np.round(room_16k(far)), -32768, 32767).astype(np.int16)
    return near, far.copy(), played


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_cpu_s(tid: int | None) -> float:
    """utime + stime of one thread of this process (s, 10 ms ticks)."""
    if tid is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def db(energy_in: float, energy_out: float) -> float | None:
    if energy_in <= 0:
        return None
    if energy_out <= 0:
        return None
    return round(10 * math.log10(energy_in / energy_out), 1)


def dbfs(energy: float, samples: int) -> float | None:
    if samples <= 0 or energy <= 0:
        return None
    return round(10 * math.log10(energy / samples / 32768**2), 1)


def spread(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def run_child(args: list[str], timeout: float = 600) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"child {args} failed ({out.returncode}): {out.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


# --- 1 and 2: capture + playback full duplex on the rig -----------------------------------


class Probe:
    """Wraps the canceller's processor: was the far end it was handed active?"""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.far_active = False

    def process(self, near: Any, far: Any) -> Any:
        self.far_active = far is not None and bool(far.any())
        return self.inner.process(near, far)


@dataclass
class Duplex:
    rows: list[tuple[int, bytes, bytes, bool]]
    starts: list[int]
    status: dict[str, Any] | None
    underruns: int
    overruns: int
    recoveries: int
    dropped: int
    cpu: dict[str, float] | None


async def duplex(
    reply: bytes,
    *,
    cancel: bool,
    keep: bool,
    replies: int | None,
    pause_s: float,
    pace: float,
    cpu_s: float | None = None,
) -> Duplex:
    """Capture (stream open) + playback on the rig, with or without the canceller."""
    from appliance.audio.capture import Capture
    from appliance.audio.devices import DeviceState
    from appliance.audio.echo import open_canceller
    from appliance.audio.fakes import eventually
    from appliance.audio.playback import Playback
    from appliance.audio.volume import Volume
    from appliance.config import AudioConfig

    cfg = AudioConfig(capture_device="rigmic", playback_device="rigspk", echo_cancel=cancel)
    canceller = open_canceller(cfg)
    rows: list[tuple[int, bytes, bytes, bool]] = []
    cleaner = None
    if canceller is not None:
        if cpu_s is None:  # record every period (not while CPU is measured)
            probe = Probe(canceller._processor)
            canceller._processor = probe
            clean = canceller.clean

            def cleaner(pcm: bytes, ns: int) -> bytes:
                probe.far_active = False
                out = clean(pcm, ns)
                rows.append((ns, pcm, out, probe.far_active))
                return out

        else:
            cleaner = canceller.clean
    capture = Capture(cfg, cleaner=cleaner)
    playback = Playback(
        cfg, volume=Volume(cfg), reference=canceller.reference if canceller else None
    )
    starts: list[int] = []

    async def talk() -> None:
        k = 0
        while replies is None or k < replies:
            await asyncio.sleep(pause_s)
            t0 = time.monotonic()
            starts.append(time.monotonic_ns())
            for i, at in enumerate(range(0, len(reply), CHUNK_BYTES)):
                playback.enqueue(reply[at : at + CHUNK_BYTES])
                due = t0 + (i + 1) * CHUNK_BYTES / 2 / 24_000 / pace
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await playback.drain()
            k += 1

    cpu = None
    await capture.start()
    await playback.start()
    try:
        await eventually(
            lambda: capture.state == DeviceState.OK and playback.state == DeviceState.OK, 10
        )
        playback.keep_running = keep
        async with capture.open_stream() as stream:

            async def consume() -> None:
                async for _ in stream:
                    pass

            consumer = asyncio.create_task(consume())
            assert capture._thread is not None and playback._thread is not None
            tids = {"capture": capture._thread.native_id, "playback": playback._thread.native_id}
            if cpu_s is None:
                await talk()
                await asyncio.sleep(min(pause_s, 0.5))  # the last reply's reverb
            else:
                wall0, cpu0 = time.monotonic(), time.process_time()
                th0 = {k: thread_cpu_s(t) for k, t in tids.items()}
                talker = asyncio.create_task(talk())
                await asyncio.sleep(cpu_s)
                wall, used = time.monotonic() - wall0, time.process_time() - cpu0
                th = {k: thread_cpu_s(t) - th0[k] for k, t in tids.items()}
                talker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await talker
                cpu = {
                    "wall_s": round(wall, 3),
                    "process_s": round(used, 4),
                    "process_pct": round(100 * used / wall, 3),
                    **{f"{k}_thread_pct": round(100 * v / wall, 3) for k, v in th.items()},
                    "replies_started": len(starts),
                }
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            dropped = stream.dropped
    finally:
        await playback.close()
        await capture.stop()
    return Duplex(
        rows=rows,
        starts=starts,
        status=canceller.status() if canceller else None,
        underruns=playback.underruns.total,
        overruns=capture.overruns.total,
        recoveries=playback.recoveries,
        dropped=dropped,
        cpu=cpu,
    )


def erle_analysis(d: Duplex) -> dict[str, Any]:
    active = [(ns, energy(i), energy(o)) for ns, i, o, far in d.rows if far]
    out: dict[str, Any] = {"periods": len(d.rows), "far_active_periods": len(active)}
    if not active:
        return out

    def sums(part: list[tuple[int, float, float]]) -> dict[str, Any]:
        ein = sum(r[1] for r in part)
        eout = sum(r[2] for r in part)
        n = len(part) * PERIOD_16K
        return {
            "erle_db": db(ein, eout),
            "in_dbfs": dbfs(ein, n),
            "out_dbfs": dbfs(eout, n),
            "seconds": round(len(part) * 0.02, 2),
        }

    first = active[0][0]
    out["first_2s"] = sums([r for r in active if r[0] < first + 2_000_000_000])
    out["settled"] = sums([r for r in active if r[0] >= first + 10_000_000_000])
    out["first_3s_by_half_second"] = [
        sums(
            [r for r in active if first + k * 500_000_000 <= r[0] < first + (k + 1) * 500_000_000]
        )["erle_db"]
        for k in range(6)
    ]
    out["whole"] = sums(active)
    replies = []
    bounds = [*d.starts, 2**63]
    for k in range(len(d.starts)):
        mine = [r for r in active if bounds[k] <= r[0] < bounds[k + 1]]
        if not mine:
            replies.append(None)
            continue
        head = [r for r in mine if r[0] < mine[0][0] + 2_000_000_000]
        replies.append({"first_2s": sums(head), "whole": sums(mine)})
    out["replies"] = replies
    return out


async def erle_part(args: argparse.Namespace, reply: bytes) -> dict[str, Any]:
    trials: dict[str, list[dict[str, Any]]] = {"keep_running": [], "stop_between": []}
    for t in range(1, args.erle_trials + 1):
        for keep in (True, False):
            d = await duplex(
                reply,
                cancel=True,
                keep=keep,
                replies=args.replies,
                pause_s=args.pause_s,
                pace=args.pace,
            )
            a = erle_analysis(d)
            a.update(
                trial=t,
                status=d.status,
                playback_underruns=d.underruns,
                capture_overruns=d.overruns,
                playback_recoveries=d.recoveries,
                stream_dropped=d.dropped,
            )
            trials["keep_running" if keep else "stop_between"].append(a)
            later = [r["first_2s"]["erle_db"] if r else None for r in a.get("replies", [])[1:]]
            print(
                f"ERLE trial {t} keep_running={keep}: first 2 s "
                f"{a.get('first_2s', {}).get('erle_db')} dB, settled "
                f"{a.get('settled', {}).get('erle_db')} dB, replies 2.. first 2 s {later} dB, "
                f"first 3 s by 0.5 s {a.get('first_3s_by_half_second')}; "
                f"{d.status}; underruns {d.underruns}, overruns {d.overruns}",
                flush=True,
            )
    summary: dict[str, Any] = {}
    for mode, rows in trials.items():
        later = [
            r["first_2s"]["erle_db"]
            for a in rows
            for r in a.get("replies", [])[1:]
            if r is not None
        ]
        summary[mode] = {
            "first_2s": spread([a.get("first_2s", {}).get("erle_db") for a in rows]),
            "settled": spread([a.get("settled", {}).get("erle_db") for a in rows]),
            "replies_2_on_first_2s": spread(later),
            "resyncs": [a["status"]["resyncs"] for a in rows],
            "far_end_runs": [a["status"]["far_end_runs"] for a in rows],
            "playback_underruns": [a["playback_underruns"] for a in rows],
            "capture_overruns": [a["capture_overruns"] for a in rows],
        }
    return {"trials": trials, "summary": summary}


async def cpu_part(args: argparse.Namespace, reply: bytes) -> dict[str, Any]:
    rounds = []
    for r in range(1, args.cpu_rounds + 1):
        order = (True, False) if r % 2 else (False, True)
        got: dict[str, Any] = {}
        for on in order:
            d = await duplex(
                reply,
                cancel=on,
                keep=on,
                replies=None,
                pause_s=args.pause_s,
                pace=args.pace,
                cpu_s=args.cpu_seconds,
            )
            assert d.cpu is not None
            d.cpu.update(underruns=d.underruns, overruns=d.overruns, status=d.status)
            got["on" if on else "off"] = d.cpu
        got["delta_process_pct"] = round(got["on"]["process_pct"] - got["off"]["process_pct"], 3)
        got["delta_capture_thread_pct"] = round(
            got["on"]["capture_thread_pct"] - got["off"]["capture_thread_pct"], 3
        )
        got["delta_playback_thread_pct"] = round(
            got["on"]["playback_thread_pct"] - got["off"]["playback_thread_pct"], 3
        )
        got["order"] = ["on" if o else "off" for o in order]
        rounds.append(got)
        print(
            f"CPU round {r} ({'-'.join(got['order'])}): process on {got['on']['process_pct']} % "
            f"off {got['off']['process_pct']} % (delta {got['delta_process_pct']}); capture "
            f"thread on {got['on']['capture_thread_pct']} off {got['off']['capture_thread_pct']}"
            f"; playback thread on {got['on']['playback_thread_pct']} off "
            f"{got['off']['playback_thread_pct']}; underruns on {got['on']['underruns']} "
            f"off {got['off']['underruns']}",
            flush=True,
        )
    summary = {
        key: spread([g[key] for g in rounds])
        for key in ("delta_process_pct", "delta_capture_thread_pct", "delta_playback_thread_pct")
    }
    for side in ("on", "off"):
        for key in ("process_pct", "capture_thread_pct", "playback_thread_pct"):
            summary[f"{side}_{key}"] = spread([g[side][key] for g in rounds])
    return {"rounds": rounds, "summary": summary}


# --- microbenchmark, callgrind ------------------------------------------------------


def micro_part(seconds: float, runs: int = 3) -> dict[str, Any]:
    import numpy as np

    from appliance.audio.echo import EchoCanceller, EchoReference, WebRtcProcessor

    near, far, played = test_audio(seconds)
    frames = len(near) // PERIOD_16K
    zeros = np.zeros(PERIOD_16K, dtype=np.int16)
    result: dict[str, Any] = {"audio_seconds": round(frames * 0.02, 2)}

    def proc() -> Any:
        return WebRtcProcessor(echo_cancel=True, noise_suppression=False, auto_gain=False)

    def timed(step: Any, warm: Any) -> float:
        for i in range(50):
            warm(i)
        c0 = time.process_time()
        for i in range(frames):
            step(i)
        return time.process_time() - c0

    cases: dict[str, list[float]] = {"speech": [], "silence": [], "full_path_speech": []}
    t0 = time.monotonic_ns() + 10**9
    near_b = [near[i * 320 : (i + 1) * 320].tobytes() for i in range(frames)]
    played_b = [played[i * PERIOD_24K_BYTES : (i + 1) * PERIOD_24K_BYTES] for i in range(frames)]
    for _ in range(runs):
        p = proc()
        sl = [(near[i * 320 : (i + 1) * 320], far[i * 320 : (i + 1) * 320]) for i in range(frames)]
        cases["speech"].append(
            timed(lambda i, p=p, sl=sl: p.process(*sl[i]), lambda i, p=p: p.process(zeros, zeros))
        )
        p = proc()
        cases["silence"].append(
            timed(lambda i, p=p: p.process(zeros, None), lambda i, p=p: p.process(zeros, None))
        )
        ref = EchoReference()
        canc = EchoCanceller(proc(), ref, period_ms=20, always=False)

        def full(i: int, ref: Any = ref, canc: Any = canc) -> None:
            at = t0 + i * 20_000_000  # period i reaches the speaker at `at`; the capture
            ref.played(played_b[i], at)  # stamp below puts the canceller's cursor on it
            canc.clean(near_b[i], at - 20_000_000)

        cases["full_path_speech"].append(timed(full, lambda i: None))
        result["full_path_echo_periods"] = canc.stats.echo_periods
    for name, values in cases.items():
        us = [v / (frames * 0.02) * 1e6 for v in values]
        result[name] = {
            "us_per_s_audio": spread(us),
            "pct_of_core_median": round(statistics.median(us) / 1e4, 3),
        }
    return result


def feed_worker(seconds: float, path: Path) -> dict[str, Any]:
    """The callgrind child: set up, warm up, then `seconds` of audio through process()."""
    import numpy as np

    from appliance.audio.echo import WebRtcProcessor

    data = np.fromfile(path, dtype="<i2").reshape(2, -1)
    near, far = data[0], data[1]
    p = WebRtcProcessor(echo_cancel=True, noise_suppression=False, auto_gain=False)
    zeros = np.zeros(PERIOD_16K, dtype=np.int16)
    for _ in range(10):
        p.process(zeros, zeros)
    for i in range(int(seconds * 50)):
        p.process(near[i * 320 : (i + 1) * 320], far[i * 320 : (i + 1) * 320])
    return {"frames": int(seconds * 50)}


def callgrind_part(seconds: float, pi_instr: float) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind is not installed"}
    import numpy as np

    near, far, _ = test_audio(seconds)
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audio.raw"
        np.stack([near, far]).astype("<i2").tofile(path)
        for secs in (0.0, seconds):
            out = Path(tmp) / f"cg-{secs}.out"
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
            cmd += [__file__, "--feed-worker", str(secs), "--feed-file", str(path)]
            env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
            print(f"  callgrind: {secs:g} s of audio ...", file=sys.stderr, flush=True)
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
            found = re.findall(r"Collected\s*:\s*(\d+)", run.stderr)
            if run.returncode or not found:
                raise RuntimeError(f"callgrind failed ({run.returncode}): {run.stderr[-2000:]}")
            counts[secs] = int(found[-1])
    per_s = (counts[seconds] - counts[0.0]) / seconds
    return {
        "audio_seconds": seconds,
        "setup_instructions": counts[0.0],
        "total_instructions": counts[seconds],
        "instructions_per_s_audio": round(per_s),
        "pi_pct_of_core": round(100 * per_s / pi_instr, 2),
    }


# --- 3: memory ---------------------------------------------------------------------


def memory_worker() -> dict[str, Any]:
    """In a fresh process: RSS (KiB) step by step."""
    steps: dict[str, int] = {"python": rss_kib()}
    import numpy  # noqa: F401

    steps["numpy"] = rss_kib()
    import appliance.audio.echo as echo
    import appliance.config as config

    steps["appliance.config + appliance.audio.echo"] = rss_kib()
    import pywebrtc_audio  # noqa: F401

    steps["import pywebrtc_audio"] = rss_kib()
    canc = echo.open_canceller(config.AudioConfig(echo_cancel=True))
    assert canc is not None
    steps["open_canceller(echo_cancel=True)"] = rss_kib()
    near, _, played = test_audio(61.0)
    near_b = [near[i * 320 : (i + 1) * 320].tobytes() for i in range(len(near) // 320)]
    t0 = time.monotonic_ns()

    def feed(first: int, n: int) -> None:
        for i in range(first, first + n):
            at = t0 + i * 20_000_000
            canc.reference.played(played[i * PERIOD_24K_BYTES : (i + 1) * PERIOD_24K_BYTES], at)
            canc.clean(near_b[i], at - 20_000_000)  # its cursor lands on `at` (see micro)

    del near
    base = rss_kib()  # the test audio itself (about 5 MB) is not the canceller's
    feed(0, 50)
    steps["+ 1 s of audio processed"] = steps["open_canceller(echo_cancel=True)"] + (
        rss_kib() - base
    )
    feed(50, 3000)
    steps["+ 60 s more"] = steps["open_canceller(echo_cancel=True)"] + (rss_kib() - base)
    return {"rss_kib": steps, "status": canc.status()}


def memory_part(children: int = 3) -> dict[str, Any]:
    runs = [run_child(["--memory-worker"], timeout=300) for _ in range(children)]
    keys = list(runs[0]["rss_kib"])
    base = "appliance.config + appliance.audio.echo"
    added = [(r["rss_kib"]["+ 1 s of audio processed"] - r["rss_kib"][base]) / 1024 for r in runs]
    leak = [
        (r["rss_kib"]["+ 60 s more"] - r["rss_kib"]["+ 1 s of audio processed"]) / 1024
        for r in runs
    ]
    return {
        "runs": runs,
        "median_rss_mib": {
            k: round(statistics.median(r["rss_kib"][k] for r in runs) / 1024, 1) for k in keys
        },
        "added_mib": spread(added),
        "after_60s_more_mib": spread(leak),
    }


# --- 4: barge-in through the daemon ---------------------------------------------------


def energy(pcm: bytes) -> float:
    import numpy as np

    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.dot(x, x))


FIRST_WORD_S = (0.05, 0.26)
"""Where the first word ("Front") is in Front_Center.wav, from the onset (s)."""


def doubletalk(
    mic: list[tuple[int, float, float]], spoke: float, voice: Any, onset_s: float
) -> dict[str, Any]:
    """The canceller around the user's first word: ERLE over the 0.5 s before it (echo
    only), and during the word the microphone, the cleaned output and the voice alone
    (from the WAV: what a perfect canceller would leave), in dBFS. Periods by the middle
    of their span (capture stamp - 10 ms)."""
    import numpy as np

    def window(a: float, b: float) -> tuple[float, float, int]:
        rows = [(i, o) for ns, i, o in mic if a <= ns - 10_000_000 < b]
        return sum(r[0] for r in rows), sum(r[1] for r in rows), len(rows) * PERIOD_16K

    ein, eout, _ = window(spoke - 600e6, spoke - 100e6)
    a, b = FIRST_WORD_S
    win, wout, n = window(spoke + a * 1e9, spoke + b * 1e9)
    lo, hi = int((onset_s + a) * 48_000), int((onset_s + b) * 48_000)
    alone = float(np.sum((voice[lo:hi].astype(np.float64) * 32768) ** 2)) / 3
    return {
        "erle_before_db": db(ein, eout),
        "first_word_mic_dbfs": dbfs(win, n),
        "first_word_out_dbfs": dbfs(wout, n),
        "first_word_voice_alone_dbfs": dbfs(alone, (hi - lo) // 3),
    }


async def barge_part(args: argparse.Namespace, jack: Any, reply: bytes) -> dict[str, Any]:
    import numpy as np
    from gpiozero import Device

    from appliance.daemon.state import Press
    from appliance.live.emulator import Emulator, Reply, Scenario
    from tests.rig.appliance import running_appliance, speech_48k
    from tests.rig.gpio import mock_pins

    rig = jack.rig
    voice = speech_48k(0.5)
    onset_s = float(np.argmax(np.abs(voice) > 0.02)) / 48_000
    reply_s = len(reply) / 2 / 24_000
    trials: list[dict[str, Any]] = []
    daemons: list[dict[str, Any]] = []
    remaining = args.barge_trials
    n_daemon = 0
    with tempfile.TemporaryDirectory() as tmp_root, mock_pins():
        while remaining > 0:
            n_daemon += 1
            per = min(args.barge_per_daemon, remaining)
            remaining -= per
            tmp = Path(tmp_root) / f"d{n_daemon}"
            tmp.mkdir()
            await asyncio.to_thread(jack.reset)
            gain = args.barge_echo_gain
            await asyncio.to_thread(rig.echo, ROOM["delay_ms"], gain, ROOM["reverb_ms"])
            await asyncio.to_thread(rig.noise, args.noise_dbfs)
            scenario = Scenario(think_ms=100, realtime_factor=1.0, default_reply=Reply(pcm=reply))
            async with (
                Emulator(scenario) as emu,
                running_appliance(
                    jack,
                    emu,
                    tmp,
                    behaviour={"duplex": "full", "conversation_timeout_s": 4},
                    audio={"echo_cancel": True},
                ) as r,
            ):
                stamped: list[tuple[str, int]] = []
                record = r.record

                def recording(state: str, record: Any = record, stamped: Any = stamped) -> None:
                    stamped.append((state, time.monotonic_ns()))
                    record(state)

                r.record = recording  # type: ignore[method-assign]
                # What the canceller took in and gave out, per period (the capture thread
                # reads `_cleaner` for every delivery, so it can be wrapped now).
                mic: list[tuple[int, float, float]] = []
                capture = r.app.capture
                assert capture is not None and capture._cleaner is not None
                inner = capture._cleaner

                def tapped(pcm: bytes, ns: int, inner: Any = inner, mic: Any = mic) -> bytes:
                    out = inner(pcm, ns)
                    mic.append((ns, energy(pcm), energy(out)))
                    return out

                capture._cleaner = tapped
                r.app.post(Press())
                listening = await r.wait_state("listening")
                await asyncio.to_thread(rig.play, speech_48k(0.2))
                after = listening
                for k in range(1, per + 1):
                    trial: dict[str, Any] = {"daemon": n_daemon, "in_daemon": k, "errors": []}
                    trials.append(trial)
                    try:
                        speaking = await r.wait_state("speaking", 30, after=after)
                    except TimeoutError:
                        trial["errors"].append(f"no reply; states {r.states[after:]}")
                        break
                    speaking_ns = next(t for s, t in reversed(stamped) if s == "speaking")
                    await asyncio.to_thread(rig.start_recording)
                    await asyncio.sleep(2.0 - (time.monotonic_ns() - speaking_ns) / 1e9)
                    pair0 = await asyncio.to_thread(clock_pair, rig)
                    start = await asyncio.to_thread(rig.play, voice)
                    try:
                        after = await r.wait_state("listening", 10, after=speaking)
                    except TimeoutError:
                        trial["errors"].append("the reply was not interrupted")
                        after = len(r.states)
                    await asyncio.sleep(0.5)
                    pair1 = await asyncio.to_thread(clock_pair, rig)
                    frames, _ = await asyncio.to_thread(rig.blocks)
                    sounding = set((await asyncio.to_thread(rig.sound_frames)).tolist())
                    spoke = frame_to_ns(start, pair0, pair1, rig.rate) + onset_s * 1e9
                    sent = [
                        s.t_ns
                        for s in emu.recorder.sent
                        if "serverContent.interrupted" in s.kind.split("+")
                    ]
                    self_cut = [t for t in sent if speaking_ns <= t < spoke]
                    heard = next((t for t in sent if t >= spoke), None)
                    trial.update(
                        speaking_to_voice_ms=round((spoke - speaking_ns) / 1e6, 1),
                        self_interruptions=len(self_cut),
                    )
                    if heard is None:
                        trial["errors"].append("no interrupted after the user spoke")
                        continue
                    quiet = next(
                        (
                            int(f)
                            for f in frames
                            if frame_to_ns(int(f), pair0, pair1, rig.rate) >= heard
                            and int(f) not in sounding
                        ),
                        None,
                    )
                    trial["heard_ms"] = round((heard - spoke) / 1e6, 1)
                    audio = [a.t_ns for a in emu.recorder.of("audio") if a.t_ns >= spoke]
                    if audio and audio[0] <= heard:
                        trial["first_audio_ms"] = round((audio[0] - spoke) / 1e6, 1)
                    trial.update(doubletalk(mic, spoke, voice, onset_s))
                    if quiet is None:
                        trial["errors"].append("the speaker never went quiet")
                    else:
                        trial["silent_ms"] = round(
                            (frame_to_ns(quiet, pair0, pair1, rig.rate) - heard) / 1e6, 1
                        )
                    trial["jack_clock_ppm"] = round(
                        ((pair1[0] - pair0[0]) / ((pair1[1] - pair0[1]) / 1e9) / rig.rate - 1)
                        * 1e6,
                        1,
                    )
                    print(
                        f"barge-in daemon {n_daemon} trial {k}: first word -> interrupted "
                        f"{trial.get('heard_ms')} ms, interrupted -> silent "
                        f"{trial.get('silent_ms')} ms (first audio at the service "
                        f"{trial.get('first_audio_ms')} ms), self-interruptions {len(self_cut)}"
                        f"; ERLE before {trial.get('erle_before_db')} dB, first word mic / out"
                        f" / voice alone {trial.get('first_word_mic_dbfs')} / "
                        f"{trial.get('first_word_out_dbfs')} / "
                        f"{trial.get('first_word_voice_alone_dbfs')} dBFS"
                        + (f" ERRORS {trial['errors']}" if trial["errors"] else ""),
                        flush=True,
                    )
                status = r.app.status()
                sent_all = [
                    s.t_ns
                    for s in emu.recorder.sent
                    if "serverContent.interrupted" in s.kind.split("+")
                ]
                daemons.append(
                    {
                        "echo_cancel": status["echo_cancel"],
                        "counters": status["counters"],
                        "interrupted_sent": len(sent_all),
                        "states": r.states,
                    }
                )
        Device.pin_factory.reset()
    heard = [t["heard_ms"] for t in trials if "heard_ms" in t]
    silent = [t["silent_ms"] for t in trials if "silent_ms" in t]
    first = [t for t in trials if "heard_ms" in t and t["in_daemon"] == 1]
    later = [t for t in trials if "heard_ms" in t and t["in_daemon"] > 1]
    return {
        "reply_s": round(reply_s, 2),
        "voice_onset_s": round(onset_s, 3),
        "trials": trials,
        "daemons": daemons,
        "summary": {
            "trials": len(trials),
            "heard_ms": spread(heard),
            "heard_within_goal": f"{sum(h <= GOAL_HEARD_MS for h in heard)}/{len(heard)}",
            "silent_ms": spread(silent),
            "silent_within_goal": f"{sum(s <= GOAL_SILENT_MS for s in silent)}/{len(silent)}",
            "heard_ms_first_reply": spread([t["heard_ms"] for t in first]),
            "heard_ms_after_barge_in": spread([t["heard_ms"] for t in later]),
            "first_audio_ms": spread(
                [t["first_audio_ms"] for t in trials if "first_audio_ms" in t]
            ),
            **{
                f"{key}{part}": spread([t.get(key) for t in group])
                for key in (
                    "erle_before_db",
                    "first_word_mic_dbfs",
                    "first_word_out_dbfs",
                    "first_word_voice_alone_dbfs",
                )
                for part, group in (("_first_reply", first), ("_after_barge_in", later))
            },
            "self_interruptions": sum(t.get("self_interruptions", 0) for t in trials),
            "interrupted_sent": sum(d["interrupted_sent"] for d in daemons),
            "errors": [e for t in trials for e in t["errors"]],
        },
    }


# --- the run ---------------------------------------------------------------------------


async def rig_parts(args: argparse.Namespace, parts: set[str], reply: bytes) -> dict[str, Any]:
    from tests.rig.jack import JackAudio, jack_available, jack_rig, rig_alsa_config

    why = jack_available()
    if why:
        raise SystemExit(f"cannot run: {why}")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (server, rig):
        os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp) / "alsa").write())
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        jack = JackAudio(server, rig, Path(os.environ["ALSA_CONFIG_PATH"]))
        await asyncio.to_thread(jack.reset)
        await asyncio.to_thread(rig.echo, *ROOM.values())
        if "erle" in parts:
            out["erle"] = await erle_part(args, reply)
        if "cpu" in parts:
            out["cpu"] = await cpu_part(args, reply)
        if "barge" in parts:
            out["barge"] = await barge_part(args, jack, reply)
    return out


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    lines: list[str] = []
    lo, hi = args.pi_factor
    if "erle" in res:
        lines += [
            f"ERLE (dB), {args.erle_trials} trials per mode, {args.replies} replies each:",
            "| mode | first 2 s median (worst) | settled median (worst) | "
            "replies 2.. first 2 s median (worst) | resyncs | far-end runs | underruns |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, s in res["erle"]["summary"].items():
            lines.append(
                f"| {mode} | {s['first_2s']['median']} ({s['first_2s']['min']}) | "
                f"{s['settled']['median']} ({s['settled']['min']}) | "
                f"{s['replies_2_on_first_2s']['median']} ({s['replies_2_on_first_2s']['min']}) "
                f"| {s['resyncs']} | {s['far_end_runs']} | {s['playback_underruns']} |"
            )
        lines.append("")
    if "cpu" in res:
        s = res["cpu"]["summary"]
        lines += [
            f"CPU, % of one core, {args.cpu_rounds} rounds x {args.cpu_seconds:g} s each side:",
            "| | on median (min..max) | off median | on - off median (min..max) |",
            "|---|---|---|---|",
        ]
        for key, label in (
            ("process_pct", "process"),
            ("capture_thread_pct", "capture thread"),
            ("playback_thread_pct", "playback thread"),
        ):
            on, off, dd = s[f"on_{key}"], s[f"off_{key}"], s[f"delta_{key}"]
            lines.append(
                f"| {label} | {on['median']} ({on['min']}..{on['max']}) | {off['median']} | "
                f"{dd['median']} ({dd['min']}..{dd['max']}) |"
            )
        d = s["delta_process_pct"]["median"]
        lines.append(
            f"Pi Zero 2 W estimate (x{lo:g}-{hi:g}) of the process delta: "
            f"{round(d * lo, 1)}-{round(d * hi, 1)} % of one core"
        )
        lines.append("")
    if "micro" in res:
        m = res["micro"]
        lines += [
            f"WebRtcProcessor microbenchmark ({m['audio_seconds']} s of audio, 3 runs):",
            "| case | us CPU per s of audio median (min..max) | % of core | Pi x8-10 |",
            "|---|---|---|---|",
        ]
        for name in ("speech", "silence", "full_path_speech"):
            u = m[name]["us_per_s_audio"]
            pct = m[name]["pct_of_core_median"]
            lines.append(
                f"| {name} | {round(u['median'])} ({round(u['min'])}..{round(u['max'])}) | "
                f"{pct} | {round(pct * lo, 1)}-{round(pct * hi, 1)} % |"
            )
        lines.append("")
    if "callgrind" in res:
        c = res["callgrind"]
        lines.append(f"callgrind: {c}")
        lines.append("")
    if "memory" in res:
        m = res["memory"]
        lines.append("RSS (MiB, median of 3 fresh children): " + json.dumps(m["median_rss_mib"]))
        lines.append(
            f"added by pywebrtc_audio + canceller + 1 s: {m['added_mib']}; "
            f"after 60 s more: {m['after_60s_more_mib']}"
        )
        lines.append("")
    if "barge" in res:
        s = res["barge"]["summary"]
        lines += [
            f"Barge-in through the daemon, {s['trials']} trials:",
            f"user's first word -> interrupted: {s['heard_ms']} ms, within "
            f"{GOAL_HEARD_MS:g} ms: {s['heard_within_goal']}",
            f"  first reply of a daemon: {s['heard_ms_first_reply']}; after a barge-in: "
            f"{s['heard_ms_after_barge_in']}",
            f"interrupted -> speaker silent: {s['silent_ms']} ms, within "
            f"{GOAL_SILENT_MS:g} ms: {s['silent_within_goal']}",
            f"self-interruptions: {s['self_interruptions']}; `interrupted` sent in all: "
            f"{s['interrupted_sent']} (user-caused: {s['heard_ms']['n']}); errors: {s['errors']}",
            "echo_cancel status per daemon: "
            + "; ".join(str(d["echo_cancel"]) for d in res["barge"]["daemons"]),
        ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The 1-minute load average and the jackd servers running (others' benchmarks)."""
    servers = 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "jackd":
                servers += 1
    return {"load_1min": round(os.getloadavg()[0], 2), "jackd_servers": servers}


def pi_factor(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    return float(lo), float(hi or lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="erle,cpu,micro,memory,barge")
    parser.add_argument("--erle-trials", type=int, default=3, help="per keep_running mode")
    parser.add_argument("--replies", type=int, default=3, help="replies per ERLE trial")
    parser.add_argument("--pause-s", type=float, default=1.0, help="before each reply")
    parser.add_argument("--pace", type=float, default=2.0, help="reply feed x real time")
    parser.add_argument("--cpu-rounds", type=int, default=3)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    parser.add_argument("--micro-seconds", type=float, default=30.0)
    parser.add_argument("--pi-factor", type=pi_factor, default=(8.0, 10.0))
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--callgrind-seconds", type=float, default=10.0)
    parser.add_argument("--barge-trials", type=int, default=10)
    parser.add_argument("--barge-per-daemon", type=int, default=2)
    parser.add_argument(
        "--barge-echo-gain", type=float, default=0.5, help="the room's echo in part 4 (0: none)"
    )
    parser.add_argument(
        "--noise-dbfs",
        type=float,
        default=None,
        help="part 4: the room's hiss at this RMS level (e.g. -60); default: digital silence",
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--log", type=Path, help="the log (INFO) goes here")
    parser.add_argument("--memory-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--feed-worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--feed-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_worker:
        print(json.dumps(memory_worker()))
        return
    if args.feed_worker is not None:
        print(json.dumps(feed_worker(args.feed_worker, args.feed_file)))
        return
    if args.log:
        logging.basicConfig(
            filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
        )
    else:
        logging.basicConfig(level=logging.WARNING)
    parts = set(args.parts.split(","))
    started = datetime.datetime.now().astimezone()
    t0 = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    if "memory" in parts:
        print("memory ...", file=sys.stderr, flush=True)
        results["memory"] = memory_part()
    if "micro" in parts:
        print("microbenchmark ...", file=sys.stderr, flush=True)
        results["micro"] = micro_part(args.micro_seconds)
    if args.callgrind:
        print("callgrind ...", file=sys.stderr, flush=True)
        results["callgrind"] = callgrind_part(args.callgrind_seconds, INSTR_PER_S_PI)
    if parts & {"erle", "cpu", "barge"}:
        results.update(asyncio.run(rig_parts(args, parts, reply_pcm())))
    results["machine_after"] = machine()
    results["started"] = started.isoformat(timespec="seconds")
    results["wall_s"] = round(time.monotonic() - t0, 1)
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    print()
    print(report(results, args))
    print(
        f"\n{started:%Y-%m-%d %H:%M %Z}, {results['wall_s']} s wall; load average and other "
        f"jackd servers before {results['machine']}, after {results['machine_after']}"
    )
    if args.json:
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
