"""Capture and playback devices open at the rates the appliance uses; `--audio-test`
records a moment (its level in dBFS) and plays a tone.

The devices are opened exactly as the daemon opens them (`devices.open_alsa`: S16_LE at
16 kHz for the microphone with `capture_channels`, 24 kHz mono for the speaker, the rate
checked), so a `hw:` device that cannot do the rate fails here, not at the first reply.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable
from typing import Any

from appliance.audio.devices import (
    AudioDeviceError,
    DeviceBusyError,
    DeviceMissingError,
    Direction,
    PcmSpec,
)
from appliance.config import AudioConfig
from appliance.doctor.result import Result, failed, passed, skipped

CAPTURE_RATE = 16_000
PLAYBACK_RATE = 24_000
PERIOD_MS = 20
RECORD_S = 2.0
TONE_HZ = 440.0
TONE_S = 1.0
TONE_DBFS = -12.0
SILENCE_DBFS = -120.0
"""What all-zero samples are reported as."""
MAX_LISTED = 8

Opener = Callable[[PcmSpec], Any]
Lister = Callable[[Direction], list[str]]


def open_real(spec: PcmSpec) -> Any:
    from appliance.audio.devices import open_alsa

    return open_alsa(spec)


def list_devices(direction: Direction) -> list[str]:
    """ALSA's PCM names for `direction` (what `arecord -L` / `aplay -L` print first)."""
    import alsaaudio

    from appliance.audio.alsa_quiet import silence_alsa_lib

    silence_alsa_lib()
    kind = alsaaudio.PCM_CAPTURE if direction == "capture" else alsaaudio.PCM_PLAYBACK
    names = list(alsaaudio.pcms(kind))
    # sound cards first (what people choose from), then `default`, then plugins
    return sorted(names, key=lambda n: 0 if "CARD=" in n else 1 if n == "default" else 2)


def spec_for(cfg: AudioConfig, direction: Direction, *, nonblock: bool = True) -> PcmSpec:
    rate = CAPTURE_RATE if direction == "capture" else PLAYBACK_RATE
    return PcmSpec(
        device=cfg.capture_device if direction == "capture" else cfg.playback_device,
        direction=direction,
        rate=rate,
        channels=cfg.capture_channels if direction == "capture" else 1,
        period_frames=rate * PERIOD_MS // 1000,
        periods=4,
        nonblock=nonblock,
    )


def check_device(
    cfg: AudioConfig,
    direction: Direction,
    *,
    service_active: bool = False,
    opener: Opener = open_real,
    lister: Lister = list_devices,
) -> Result:
    """Open and close the device as the daemon would."""
    spec = spec_for(cfg, direction)
    what = f"{spec.device!r} at {spec.rate} Hz, {spec.channels} channel(s), S16_LE"
    try:
        opener(spec).close()
    except AudioDeviceError as exc:
        return _device_failed(exc, spec, service_active, lister)
    return passed(direction, f"{what} opens")


def _device_failed(
    exc: AudioDeviceError, spec: PcmSpec, service_active: bool, lister: Lister
) -> Result:
    key = f"audio.{spec.direction}_device"
    tool = "arecord -L" if spec.direction == "capture" else "aplay -L"
    if isinstance(exc, DeviceBusyError):
        if service_active:
            return skipped(
                spec.direction,
                f"{spec.device!r} is busy: the running service holds it",
                "to test it: sudo systemctl stop appliance; appliance doctor; "
                "sudo systemctl start appliance",
            )
        return failed(
            spec.direction,
            f"{spec.device!r} is busy ({exc.detail})",
            f"find who holds it: fuser -v /dev/snd/*; or use a shared device (`{tool}`)",
        )
    message = f"{spec.device!r} cannot be opened: {exc.detail}"
    if isinstance(exc, DeviceMissingError):
        message = f"{spec.device!r} is not available ({exc.detail})"
    try:
        names = lister(spec.direction)
    except Exception as err:  # no ALSA at all
        names = []
        message += f"; listing devices failed too ({err})"
    shown = ", ".join(names[:MAX_LISTED]) + (", ..." if len(names) > MAX_LISTED else "")
    there = f"devices here: {shown}" if names else "no devices found"
    return failed(
        spec.direction,
        f"{message}; {there}",
        f"set {key} to one of them (`{tool}` lists them with descriptions)",
    )


# --- the audio test -------------------------------------------------------------------


def dbfs(samples: array[int]) -> tuple[float, float]:
    """(RMS, peak) of 16-bit samples in dBFS; all zeros is SILENCE_DBFS."""
    if not samples:
        return SILENCE_DBFS, SILENCE_DBFS
    peak = max(abs(s) for s in samples)
    if peak == 0:
        return SILENCE_DBFS, SILENCE_DBFS
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return 20 * math.log10(rms / 32768), 20 * math.log10(peak / 32768)


def record_test(
    cfg: AudioConfig, *, seconds: float = RECORD_S, opener: Opener = open_real
) -> Result:
    """Record `seconds` from the microphone channel the daemon uses; report its level."""
    spec = spec_for(cfg, "capture", nonblock=False)
    try:
        pcm = opener(spec)
    except AudioDeviceError as exc:
        return failed(
            "recording", f"cannot open {spec.device!r}: {exc.detail}", "fix the capture check first"
        )
    wanted = int(seconds * spec.rate) * spec.frame_bytes
    data = bytearray()
    try:
        while len(data) < wanted:
            frames, chunk = pcm.read()
            if frames < 0:  # an overrun: carry on, the level is what matters
                continue
            data += chunk
    except Exception as exc:
        return failed(
            "recording",
            f"reading {spec.device!r} failed: {exc}",
            "check the capture device (`arecord -D DEVICE -d 2 test.wav`)",
        )
    finally:
        pcm.close()
    samples = array("h")
    samples.frombytes(bytes(data[:wanted]))
    mono = samples[cfg.capture_channel :: spec.channels]
    rms, peak = dbfs(mono)
    level = f"{seconds:g} s from {spec.device!r}: level {rms:.1f} dBFS RMS, peak {peak:.1f} dBFS"
    if peak <= SILENCE_DBFS:
        return failed(
            "recording",
            f"{level} (digital silence: nothing comes in)",
            "check the capture switch and gain in `alsamixer` (F4, capture), "
            "and audio.capture_channel",
        )
    if peak >= -0.1:
        return passed("recording", f"{level} (clipping: lower the gain in `alsamixer`)")
    return passed("recording", level)


def tone(
    hz: float = TONE_HZ,
    seconds: float = TONE_S,
    level_dbfs: float = TONE_DBFS,
    rate: int = PLAYBACK_RATE,
) -> bytes:
    """A sine with 10 ms fades (no clicks), as 16-bit mono PCM."""
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    n = int(seconds * rate)
    fade = rate // 100
    samples = array(
        "h",
        (
            int(
                amplitude
                * min(1.0, i / fade, (n - i) / fade)
                * math.sin(2 * math.pi * hz * i / rate)
            )
            for i in range(n)
        ),
    )
    return samples.tobytes()


def play_test(cfg: AudioConfig, *, opener: Opener = open_real) -> Result:
    """Play a 1 s 440 Hz tone at -12 dBFS (the volume setting is not applied)."""
    spec = spec_for(cfg, "playback", nonblock=False)
    pcm_bytes = tone() + bytes(spec.period_bytes * (spec.periods + 2))  # the tail is silence
    try:
        pcm = opener(spec)
    except AudioDeviceError as exc:
        return failed(
            "tone", f"cannot open {spec.device!r}: {exc.detail}", "fix the playback check first"
        )
    start = time.monotonic()
    try:
        for i in range(0, len(pcm_bytes), spec.period_bytes):
            pcm.write(pcm_bytes[i : i + spec.period_bytes])
        if hasattr(pcm, "drain"):
            pcm.drain()
    except Exception as exc:
        return failed(
            "tone",
            f"writing to {spec.device!r} failed: {exc}",
            "check the playback device (`speaker-test -D DEVICE -t sine -l 1`)",
        )
    finally:
        pcm.close()
    took = time.monotonic() - start
    return passed(
        "tone",
        f"played {TONE_S:g} s of {TONE_HZ:g} Hz at {TONE_DBFS:g} dBFS on "
        f"{spec.device!r} in {took:.1f} s: you should have heard it",
    )
