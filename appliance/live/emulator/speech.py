"""The emulator's reply audio: 24 kHz 16-bit mono PCM, deterministic for a given text.

With `espeak-ng` on PATH the reply text is spoken (pleasant for a demo, and a real voice
for the audio path); without it a short tone melody stands in. Both are deterministic so
tests can compare bytes. Tone frequencies avoid ones that repeat exactly every 480 frames
at 48 kHz (600 Hz does; 610 Hz does not), which the JACK test rig would mistake for a
stalled port (see the test rig notes).
"""

from __future__ import annotations

import functools
import io
import math
import shutil
import subprocess
import tempfile
import wave
from array import array
from pathlib import Path

OUTPUT_RATE = 24000
_TONES_HZ = (610.0, 730.0, 870.0, 690.0)


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Linear-interpolation resampler for 16-bit mono PCM (good enough for speech)."""
    if src_rate == dst_rate or not pcm:
        return pcm
    src = array("h")
    src.frombytes(pcm[: len(pcm) // 2 * 2])
    n_out = len(src) * dst_rate // src_rate
    out = array("h", bytes(2 * n_out))
    step = src_rate / dst_rate
    last = len(src) - 1
    for i in range(n_out):
        pos = i * step
        j = int(pos)
        frac = pos - j
        a = src[j]
        b = src[j + 1] if j < last else a
        out[i] = int(a + (b - a) * frac)
    return out.tobytes()


def tones(text: str, rate: int = OUTPUT_RATE) -> bytes:
    """A deterministic melody about as long as speaking `text` would take."""
    words = max(1, len(text.split()))
    note_s = 0.18
    notes = min(40, max(4, words))
    amplitude = 6000
    fade = int(rate * 0.01)
    out = array("h")
    for k in range(notes):
        freq = _TONES_HZ[k % len(_TONES_HZ)]
        n = int(rate * note_s)
        for i in range(n):
            env = min(1.0, i / fade, (n - 1 - i) / fade)
            out.append(int(amplitude * env * math.sin(2 * math.pi * freq * i / rate)))
        out.extend(array("h", [0] * int(rate * 0.04)))
    return out.tobytes()


def _espeak(text: str, exe: str, voice: str) -> bytes | None:
    with tempfile.TemporaryDirectory(prefix="emu-speech-") as tmp:
        path = Path(tmp) / "reply.wav"
        result = subprocess.run(
            [exe, "-v", voice, "-s", "165", "-w", str(path), text],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0 or not path.exists():
            return None
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                return None
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    return resample(pcm, rate, OUTPUT_RATE)


@functools.lru_cache(maxsize=64)
def speak(text: str, voice: str = "en-us", use_espeak: bool = True) -> bytes:
    """Reply audio for `text`: espeak-ng's voice if available, else `tones(text)`."""
    exe = shutil.which("espeak-ng") if use_espeak else None
    if exe:
        pcm = _espeak(text, exe, voice)
        if pcm:
            return pcm
    return tones(text)


def wav_bytes_to_pcm(data: bytes) -> tuple[bytes, int]:
    """(PCM, rate) of a 16-bit mono WAV's bytes; used by the CLI's --reply-wav."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError("the reply WAV must be 16-bit mono PCM")
        return wav.readframes(wav.getnframes()), wav.getframerate()
