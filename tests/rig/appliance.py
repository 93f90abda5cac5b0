"""The whole appliance on the test rigs: the real daemon (`Appliance`) with real ALSA
through the JACK dummy rig, the Live emulator over TLS, and gpiozero mock pins.

`running_appliance(...)` starts it in the test's event loop and records every state it
goes through, so a test can say "press, speak, wait until speaking, check what the
emulator received and what the speaker played". Every run also checks the privacy rule
(`tests.rig.privacy`): no audio or video reached the service outside a conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from appliance import config as config_mod
from appliance.daemon.app import Appliance
from appliance.live.emulator import Emulator
from tests.rig.jack import JackAudio
from tests.rig.privacy import PrivacyWatch

FRONT_CENTER = Path("/usr/share/sounds/alsa/Front_Center.wav")


def speech_48k(seconds_of_silence_after: float = 0.8) -> Any:
    """A real human voice at the JACK rate (float32), then silence (the user stops)."""
    import numpy as np

    with wave.open(str(FRONT_CENTER), "rb") as wav:
        assert wav.getframerate() == 48000 and wav.getnchannels() == 1
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    voice = samples.astype(np.float32) / 32768
    return np.concatenate([voice, np.zeros(int(48000 * seconds_of_silence_after), np.float32)])


def appliance_config(
    jack: JackAudio, emu: Emulator, tmp: Path, **sections: dict[str, Any]
) -> config_mod.Config:
    """A config for the rig: its devices, the emulator, a socket in `tmp`, no chimes."""
    raw: dict[str, Any] = {
        "live": {"endpoint": emu.base_url, "ca_file": str(emu.ca_file), "setup_timeout_s": 5},
        "audio": {
            "capture_device": jack.capture_device,
            "playback_device": jack.playback_device,
            "earcons": [],
        },
        "behaviour": {"conversation_timeout_s": 3, "half_duplex_tail_ms": 200},
        "control": {"socket": str(tmp / "control.sock")},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_mod.from_dict(raw, "test-config")


@dataclass
class Running:
    """A started appliance and what it went through."""

    app: Appliance
    emu: Emulator
    jack: JackAudio
    states: list[str] = field(default_factory=list)
    privacy: PrivacyWatch = field(default_factory=PrivacyWatch)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_state(self, wanted: str, within_s: float = 20.0, *, after: int = 0) -> int:
        """Wait until the appliance enters `wanted` (at index >= `after`); its index."""

        def seen() -> int | None:
            for i in range(after, len(self.states)):
                if self.states[i] == wanted:
                    return i
            return None

        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: seen() is not None)
        index = seen()
        assert index is not None
        return index

    def record(self, new_state: str) -> None:
        self.states.append(new_state)
        self.privacy.saw(new_state)

        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(wake())


@contextlib.asynccontextmanager
async def running_appliance(
    jack: JackAudio,
    emu: Emulator,
    tmp: Path,
    *,
    picamera2_class: type | None = None,
    clock: Any = None,
    notifier: Any = None,
    **sections: dict[str, Any],
) -> AsyncIterator[Running]:
    """The daemon, started in this loop, with the rig's devices; always shut down.

    `sections` are config tables merged over the rig's; `picamera2_class` stands in for
    the camera (tests/rig/frames.py); `clock` is the timers' clock (a ManualClock);
    `notifier` is an sd_notify `service.Notifier`."""
    cfg = appliance_config(jack, emu, tmp, **sections)
    running: Running
    app = Appliance(
        cfg,
        api_key=SecretStr(emu.api_key),
        state_dir=tmp / "state",
        environ={},
        on_state=lambda s: running.record(s),
        picamera2_class=picamera2_class,
        clock=clock,
        notifier=notifier,
    )
    running = Running(app, emu, jack, states=[app.machine.state])
    task = asyncio.create_task(app.run())
    try:
        ready = asyncio.create_task(app.ready.wait())
        async with asyncio.timeout(15):
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # start() failed: raise its error
        yield running
    finally:
        app.shutdown()
        async with asyncio.timeout(15):
            await task
        running.privacy.end()
    leaked = running.privacy.violations(emu.recorder)
    assert not leaked, f"media reached the service outside a conversation: {leaked[:5]}"


def control(r: Running) -> Any:
    """A control-socket client for the running appliance (the CLI verbs' own client)."""
    from appliance.daemon.control import ControlClient

    assert r.app.control is not None
    return ControlClient(r.app.control.path)


async def call(fn: Any, *args: Any) -> Any:
    """Run a blocking call (a control request) off the loop the appliance runs in."""
    return await asyncio.to_thread(fn, *args)


def played_blocks(jack: JackAudio) -> Any:
    """Recorded speaker blocks that carry new sound (jack plugin repeats excluded)."""
    frames, blocks = jack.rig.blocks()
    loud = set(jack.rig.sound_frames().tolist())
    return [b for f, b in zip(frames, blocks, strict=True) if f in loud]


def dominant_hz(blocks: Any, rate: int = 48_000) -> float:
    """The strongest frequency in the blocks (a reply's pitch, a chime's tone)."""
    import numpy as np

    signal = np.concatenate(list(blocks)).astype(np.float64) if len(blocks) else np.zeros(1)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * rate / len(signal))
