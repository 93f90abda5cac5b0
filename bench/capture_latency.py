"""Speech onset -> the period that holds it, out of the microphone (not a test: numbers).

    .venv/bin/python bench/capture_latency.py [--trials 30] [--idle-batch 5] [--json FILE]

On the paced JACK dummy rig (48 kHz, 10 ms blocks; `rigmic` through alsa-lib's jack
and plug plugins at 16 kHz, 20 ms periods) the rig plays a tone burst into the
microphone at a chosen JACK frame, at a random phase against the capture periods. The
frame is mapped to `time.monotonic_ns()` by reading the JACK clock and the monotonic
clock together. Each trial measures, from the onset:

- minimal: a blocking `pcm.read()` loop in a thread (what a minimal client does): the
  moment the read holding the onset returns;
- appliance: the engine's `Capture`, running idle (batched reads) until a stream opens
  as a conversation starts; then the period's `captured_ns` (its read returned) and
  when the asyncio consumer got it (the hand-off; the Live client sends from there).

Both readers hear the same burst, so load on this shared machine hits both alike; both
stay open for the whole run (a JACK client joining the graph can reorder it, which
moves another client's audio by a 10 ms block: that is the rig, not the reader).
A period is 20 ms: the onset lands anywhere in one, so a reader that is never late
sees roughly 10 ms (mean) to 20 ms (max) plus the rig's own 10 ms JACK block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from appliance.audio.capture import Capture  # noqa: E402
from appliance.config import AudioConfig  # noqa: E402
from tests.rig.jack import jack_rig, rig_alsa_config  # noqa: E402

THRESHOLD = 0.05  # of full scale, at 16 kHz


def burst() -> Any:
    t = np.arange(int(48000 * 0.3)) / 48000
    return (0.5 * np.sin(2 * np.pi * 610 * t)).astype(np.float32)


def onset_in(pcm: bytes) -> bool:
    return bool(np.abs(np.frombuffer(pcm, "<i2")).max() > THRESHOLD * 32768)


class Clock:
    """JACK frames -> monotonic ns, from paired readings."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig

    def pair(self) -> tuple[int, int]:
        t0 = time.monotonic_ns()
        frame = self.rig.frame_time
        t1 = time.monotonic_ns()
        return (t0 + t1) // 2, frame

    def play_at_random_phase(self) -> int:
        """Start the burst 150-250 ms from now; its onset in monotonic ns."""
        t, frame = self.pair()
        at = frame + random.randint(7200, 12000)
        self.rig.play(burst(), at_frame=at)
        return t + (at - frame) * 1_000_000_000 // 48000


class MinimalReader:
    """A minimal client: blocking reads in a thread, open for the whole run."""

    def __init__(self) -> None:
        import alsaaudio as a

        self._pcm = a.PCM(type=a.PCM_CAPTURE, rate=16000, channels=1,
                          format=a.PCM_FORMAT_S16_LE, periodsize=320, periods=4,
                          device="rigmic")  # fmt: skip
        self.armed: int | None = None  # onset (monotonic ns) to look for
        self.hits: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            _, data = self._pcm.read()
            now = time.monotonic_ns()
            onset = self.armed
            if onset is not None and data and onset_in(data):
                self.hits.append(now - onset)
                self.armed = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pcm.close()


async def trial(capture: Capture, minimal: MinimalReader, clock: Clock) -> tuple[int, int]:
    """A stream opens on the long-running capture (as a conversation starts), then one
    burst is heard by both readers."""
    result: tuple[int, int] | None = None
    async with capture.open_stream() as stream:
        await asyncio.sleep(0.2)
        onset = await asyncio.to_thread(clock.play_at_random_phase)
        minimal.armed = onset
        async with asyncio.timeout(2):
            async for period in stream:
                if period.captured_ns > onset - 50_000_000 and onset_in(period.pcm):
                    result = (period.captured_ns - onset, time.monotonic_ns() - onset)
                    break
    await asyncio.sleep(0.4)
    if result is None or minimal.armed is not None:
        raise RuntimeError("a reader never saw the burst")
    return result


def summary(values_ns: list[int]) -> dict[str, float]:
    ms = sorted(v / 1e6 for v in values_ns)
    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 1),
        "p50_ms": round(statistics.median(ms), 1),
        "max_ms": round(ms[-1], 1),
        "min_ms": round(ms[0], 1),
    }


async def run(trials: int, idle_batch: int = 5) -> dict[str, Any]:
    minimal: list[int] = []
    read: list[int] = []
    handoff: list[int] = []
    with jack_rig() as (server, rig):
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp)).write())
            os.environ["JACK_DEFAULT_SERVER"] = server.name
            clock = Clock(rig)
            # Both readers stay open for the whole run: a JACK client joining or leaving
            # the graph can reorder it, which moves another client's audio by a block.
            # The daemon's capture runs for good (idle batches between conversations).
            capture = Capture(
                AudioConfig(capture_device="rigmic", period_ms=20), idle_batch=idle_batch
            )
            await capture.start()
            reader = MinimalReader()
            await asyncio.sleep(2)
            for _ in range(trials):
                r, h = await trial(capture, reader, clock)
                read.append(r)
                handoff.append(h)
                await asyncio.sleep(random.uniform(0.5, 2.0))  # idle between conversations
            minimal = reader.hits
            reader.close()
            overruns = capture.overruns.total
            await capture.stop()
    late = [r - m for m, r in zip(minimal, read, strict=True)]
    return {
        "minimal_read": summary(minimal),
        "appliance_read": summary(read),
        "appliance_handoff": summary(handoff),
        "appliance_minus_minimal": summary(late),
        "per_trial_ms": [round(v / 1e6, 1) for v in late],
        "appliance_capture_overruns": overruns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument(
        "--idle-batch", type=int, default=5, help="Capture's idle batch (periods per read)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.trials, args.idle_batch))
    print("| onset -> | n | mean ms | p50 ms | min ms | max ms |")
    print("|---|---|---|---|---|---|")
    for name, s in results.items():
        if not isinstance(s, dict):
            continue
        print(
            f"| {name} | {s['n']} | {s['mean_ms']} | {s['p50_ms']} | {s['min_ms']} "
            f"| {s['max_ms']} |"
        )
    print("appliance - minimal, per trial (ms):", results["per_trial_ms"])
    print("appliance capture overruns:", results["appliance_capture_overruns"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
