"""The paced audio rig for tests: the package's virtual sound card, as pytest fixtures.

`appliance.demo.room` has the JACK dummy server and the room client (in its own
process) that plays "mic" and records "spk"; this module names the client `rig`,
wires ALSA devices `rigmic` / `rigspk` to it, and shares one server per test session
(libjack allows one server per process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.demo.room import BLOCK, RATE, JackServer, jack_available
from appliance.demo.room import RoomClient as RigClient
from tests.rig.alsa import AlsaRig

__all__ = ["BLOCK", "RATE", "JackAudio", "JackServer", "RigClient", "jack_available"]


def tone(hz: float, seconds: float, rate: int = RATE, level: float = 0.5) -> Any:
    import numpy as np

    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@contextmanager
def jack_rig(port_prefix: str = "rig") -> Iterator[tuple[JackServer, RigClient]]:
    """A started server (as the default server) and its rig client; always cleaned up."""
    server = JackServer()
    server.start()
    try:
        with server.environment():
            client = RigClient(server.name, name=port_prefix)
            try:
                yield server, client
            finally:
                client.close()
    finally:
        server.stop()


@dataclass
class JackAudio:
    """What a paced-audio test gets: the server, the rig client, and ALSA device names."""

    server: JackServer
    rig: RigClient
    alsa_config: Path
    capture_device: str = "rigmic"
    playback_device: str = "rigspk"

    def restart_server(self, down_s: float = 0.0) -> None:
        """Stop the server (as if the sound card vanished) and start it again.

        One process can only talk to one JACK server at a time (libjack's globals), so
        fault tests restart this one instead of starting a second.
        """
        self.rig.close()
        self.server.stop()
        time.sleep(down_s)
        self.server.start()
        self.rig = RigClient(self.server.name, name="rig")

    def kill_server(self) -> None:
        """Stop the server and the rig client; `revive_server()` brings both back."""
        self.rig.close()
        self.server.stop()

    def revive_server(self) -> None:
        self.server.start()
        self.rig = RigClient(self.server.name, name="rig")

    def reset(self) -> None:
        self.rig.stop_recording()
        self.rig.echo(gain=0.0)
        self.rig.noise(None)
        self.rig.play([])
        self.rig.start_recording()


def rig_alsa_config(directory: Path, client: str = "rig") -> AlsaRig:
    """`rigmic` / `rigspk`: ALSA devices wired to the rig client's ports."""
    rig = AlsaRig(directory)
    rig.jack_capture("rigmic", f"{client}:mic")
    rig.jack_playback("rigspk", f"{client}:spk")
    return rig


@pytest.fixture(scope="session")
def jack_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JackAudio]:
    """One JACK dummy server and rig client for the whole session (stopped at the end)."""
    why = jack_available()
    if why:
        pytest.skip(why)
    alsa = rig_alsa_config(tmp_path_factory.mktemp("jack-alsa")).write()
    with jack_rig() as (server, client):
        yield JackAudio(server, client, alsa)


@pytest.fixture
def jack_audio(jack_session: JackAudio, monkeypatch: pytest.MonkeyPatch) -> JackAudio:
    """The session's rig, reset (no signal, fresh recording), as this test's default."""
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_session.server.name)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(jack_session.alsa_config))
    jack_session.reset()
    return jack_session
