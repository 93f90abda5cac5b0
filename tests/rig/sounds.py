"""Sounds for the room to make, at the JACK rig's rate (48 kHz float32 mono).

Speech from espeak-ng (any phrase, several voices), the real voices alsa-utils ships,
and noise from sox: what a wake word must answer to, and what it must not.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
RATE = 48_000


def _read_48k(path: Path) -> Any:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "48k.wav"
        subprocess.run(
            ["sox", str(path), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed", str(out)],
            check=True,
        )
        with wave.open(str(out), "rb") as wav:
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return samples.astype(np.float32) / 32768


def espeak_48k(text: str, voice: str = "en-us", words_per_minute: int = 160) -> Any:
    """`text` said by espeak-ng's `voice`."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text],
            check=True,
        )
        return _read_48k(wav)


def alsa_voices_48k() -> list[Any]:
    """alsa-utils' recordings (Front_Center.wav and its siblings, Noise.wav)."""
    return [_read_48k(path) for path in sorted(ALSA_SOUNDS.glob("*.wav"))]


def noise_48k(seconds: float, colour: str = "pinknoise", level: float = 0.1) -> Any:
    """sox's `colour` noise (whitenoise, pinknoise, brownnoise) at amplitude `level`."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "noise.wav"
        subprocess.run(
            [
                "sox",
                "-n",
                "-r",
                str(RATE),
                "-c",
                "1",
                "-b",
                "16",
                str(wav),
                "synth",
                str(seconds),
                colour,
                "vol",
                str(level),
            ],
            check=True,
        )
        return _read_48k(wav)


def silence(seconds: float) -> Any:
    import numpy as np

    return np.zeros(int(RATE * seconds), np.float32)


def sequence(*parts: Any) -> Any:
    import numpy as np

    return np.concatenate(parts).astype(np.float32)


def pcm_16k(path: Path) -> bytes:
    """A sound file as the Live API's input: 16 kHz mono S16_LE bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "16k.raw"
        subprocess.run(
            ["sox", str(path), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", str(out)],
            check=True,
        )
        return out.read_bytes()


def espeak_16k(text: str, voice: str = "en-us") -> bytes:
    """`text` said by espeak-ng's `voice`, as 16 kHz mono S16_LE bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
        return pcm_16k(wav)


def best_match(heard: Any, piece: Any) -> float:
    """Normalised cross-correlation peak of `piece` within `heard` (1.0: found exactly)."""
    import numpy as np

    if len(heard) < len(piece):
        return 0.0
    corr = np.correlate(heard, piece, mode="valid")
    energy = np.sqrt(np.convolve(heard**2, np.ones(len(piece)), mode="valid"))
    return float((corr / (energy * np.linalg.norm(piece) + 1e-9)).max())
