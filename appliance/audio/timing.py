"""Monotonic nanosecond stamps at the audio path's boundaries, kept cheaply.

Each boundary pair (e.g. "period returned by ALSA" -> "period handed to the consumer")
goes into a fixed-size ring of two `array('q')`: one store per event, no allocation, no
lock (one writer thread per ring; a reader may see a torn last entry, which only costs
one sample of a statistic). The benchmark and `appliance status` read them on demand.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


class StampRing:
    """The most recent `size` (start_ns, end_ns) pairs of one boundary."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._start = array("q", bytes(8 * size))
        self._end = array("q", bytes(8 * size))
        self.count = 0
        """Pairs ever added (not only those still in the ring)."""

    def add(self, start_ns: int, end_ns: int) -> None:
        i = self.count % self._size
        self._start[i] = start_ns
        self._end[i] = end_ns
        self.count += 1

    def pairs(self) -> list[tuple[int, int]]:
        """The pairs still held, oldest first."""
        n = min(self.count, self._size)
        first = self.count - n
        return [
            (self._start[j % self._size], self._end[j % self._size])
            for j in range(first, first + n)
        ]

    def durations_ns(self) -> list[int]:
        return [end - start for start, end in self.pairs()]

    def clear(self) -> None:
        self.count = 0


def percentile(values: list[int] | list[float], pct: float) -> float:
    """Nearest-rank percentile (no numpy needed); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


@dataclass
class AudioStamps:
    """All boundaries of the audio engine; one instance shared by capture and playback."""

    capture_to_handoff: StampRing = field(default_factory=StampRing)
    """ALSA read returned -> the consumer received the period (live periods only)."""
    receive_to_write: StampRing = field(default_factory=StampRing)
    """Reply chunk received (caller's stamp) -> its first frame written to ALSA.

    Includes the time the chunk waited behind earlier audio (the jitter cushion and a
    full ALSA buffer are deliberate), so with replies arriving faster than real time
    it measures the queue, not the engine.
    """
    write_delay: StampRing = field(default_factory=StampRing)
    """The engine's own share of that: from when the writer could have written the
    chunk (it had arrived and the writer woke with room for it) to the write returning."""
    stop_call: StampRing = field(default_factory=lambda: StampRing(256))
    """Playback.stop() called -> returned (the PCM was dropped)."""
