"""The JACK clock against ours: when a frame of the rig was (or will be) on the monotonic
clock, for measurements that span the room and the daemon (benchmarks, timing checks)."""

from __future__ import annotations

import time
from typing import Any

from appliance.demo.room import RATE


def clock_pair(rig: Any) -> tuple[int, int]:
    """(JACK frame, monotonic ns) read together: the tightest of five round trips."""
    best: tuple[int, int, int] | None = None
    for _ in range(5):
        t0 = time.monotonic_ns()
        frame = rig.frame_time
        t1 = time.monotonic_ns()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, frame, (t0 + t1) // 2)
    assert best is not None
    return best[1], best[2]


def frame_to_ns(frame: float, a: tuple[int, int], b: tuple[int, int], rate: int = RATE) -> float:
    """Monotonic ns of a JACK frame, interpolated between clock pairs `a` and `b` (the
    dummy backend's clock runs at its own rate)."""
    (f0, n0), (f1, n1) = a, b
    ns_per_frame = (n1 - n0) / (f1 - f0) if f1 != f0 else 1e9 / rate
    return n0 + (frame - f0) * ns_per_frame
