"""Sample arithmetic on S16_LE buffers: channel picking, gain with clipping, scaling.

numpy does it in C without per-sample Python loops (`audioop` is gone in Python 3.13;
`array` slicing can pick a channel but has no saturating multiply). numpy is imported
lazily, only when a conversion is actually needed (mono, 0 dB, 100 % volume never load
it), because its import costs about half a second on a Pi Zero 2 W.
"""

from __future__ import annotations

import math
from typing import Any


def _np() -> Any:
    import numpy

    return numpy


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


def pick_channel(data: bytes, channels: int, channel: int) -> bytes:
    """One channel of interleaved S16_LE frames (one copy)."""
    if channels == 1:
        return data
    np = _np()
    return bytes(np.frombuffer(data, dtype="<i2")[channel::channels].tobytes())


def apply_gain(data: bytes, gain: float) -> bytes:
    """Multiply S16_LE samples by `gain`, saturating at the 16-bit limits."""
    if gain == 1.0 or not data:
        return data
    np = _np()
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples *= gain
    np.clip(samples, -32768, 32767, out=samples)
    return bytes(np.rint(samples).astype("<i2").tobytes())


def volume_to_gain(percent: int) -> float:
    """Perceptual volume curve for software scaling: cubic, like PulseAudio's.

    Linear scaling makes the top half of the range sound nearly the same; the cubic
    curve spreads loudness evenly. 0 % is silence, 100 % leaves samples untouched.
    """
    p = max(0, min(100, percent)) / 100
    return p**3 if p < 1 else 1.0


def tone(
    rate: int,
    parts: list[tuple[float, float, float]],
    level: float = 0.3,
    fade_ms: float = 5.0,
) -> bytes:
    """Concatenated sine sweeps as S16_LE mono: `parts` = [(f0_hz, f1_hz, seconds)].

    Each part sweeps linearly from f0 to f1 with a short raised-cosine fade at both ends,
    so there are no clicks.
    """
    np = _np()
    out = []
    for f0, f1, seconds in parts:
        n = int(rate * seconds)
        t = np.arange(n) / rate
        phase = 2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
        wave = np.sin(phase) * level
        fade = min(n // 2, int(rate * fade_ms / 1000))
        if fade:
            ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, fade))
            wave[:fade] *= ramp
            wave[n - fade :] *= ramp[::-1]
        out.append(wave)
    samples = np.concatenate(out) if out else np.zeros(0)
    return bytes((samples * 32767).astype("<i2").tobytes())


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """S16_LE mono from `src_rate` to `dst_rate` by linear interpolation (for the odd
    chunk at another rate; not a high-quality converter)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    np = _np()
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
    n = len(x) * dst_rate // src_rate
    positions = np.arange(n) * (src_rate / dst_rate)
    y = np.interp(positions, np.arange(len(x)), x)
    return bytes(np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes())


def silence(frames: int) -> bytes:
    return bytes(2 * frames)
