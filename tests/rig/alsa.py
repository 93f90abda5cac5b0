"""ALSA configs with virtual devices, for tests and benchmarks that use real alsa-lib.

`AlsaRig` writes a config file that includes the system's `alsa.conf` and then defines
the devices a test asks for; `activate()` points `ALSA_CONFIG_PATH` at it (alsa-lib
re-reads its config when that list of files changes, so each test can have its own).

- `file_capture(name, infile)`: reads the bytes of `infile` (unpaced: as fast as read).
- `file_playback(name, outfile, wav=False)`: what is played lands in `outfile` (raw, or
  a WAV whose header records the rate and channels the PCM really ran at).
- `jack_capture(name, port)` / `jack_playback(name, port)`: paced devices on a JACK
  server (see tests/rig/jack.py), converted by `plug` from the app's rate to 48 kHz.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SYSTEM_CONF = "/usr/share/alsa/alsa.conf"


def _q(text: str | Path) -> str:
    """An ALSA config string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


class AlsaRig:
    """Build an ALSA config of virtual devices in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "asound.conf"
        self._devices: dict[str, str] = {}

    def file_capture(self, name: str, infile: Path) -> str:
        self._devices[name] = (
            f'{{ type file slave.pcm "null" file "/dev/null" infile {_q(infile)} format "raw" }}'
        )
        return name

    def file_playback(self, name: str, outfile: Path, *, wav: bool = False) -> str:
        fmt = "wav" if wav else "raw"
        self._devices[name] = f'{{ type file slave.pcm "null" file {_q(outfile)} format "{fmt}" }}'
        return name

    def jack_capture(self, name: str, port: str, rate: int = 48000) -> str:
        self._devices[name] = (
            f"{{ type plug slave {{ pcm {{ type jack capture_ports {{ 0 {_q(port)} }} }} "
            f"rate {rate} }} }}"
        )
        return name

    def jack_playback(self, name: str, port: str, rate: int = 48000) -> str:
        self._devices[name] = (
            f"{{ type plug slave {{ pcm {{ type jack playback_ports {{ 0 {_q(port)} }} }} "
            f"rate {rate} }} }}"
        )
        return name

    def write(self) -> Path:
        lines = [f"<{SYSTEM_CONF}>"]
        lines += [f"pcm.{name} {body}" for name, body in self._devices.items()]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(lines) + "\n")
        return self.path

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Write the config and set `ALSA_CONFIG_PATH` until the test ends."""
        path = self.write()
        monkeypatch.setenv("ALSA_CONFIG_PATH", str(path))
        return path

    @contextmanager
    def activate(self) -> Iterator[Path]:
        """Write the config and point this process (and children) at it."""
        path = self.write()
        old = os.environ.get("ALSA_CONFIG_PATH")
        os.environ["ALSA_CONFIG_PATH"] = str(path)
        try:
            yield path
        finally:
            if old is None:
                os.environ.pop("ALSA_CONFIG_PATH", None)
            else:
                os.environ["ALSA_CONFIG_PATH"] = old


@pytest.fixture
def alsa_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlsaRig:
    """An empty `AlsaRig` in the test's tmp dir; add devices, then `rig.apply(monkeypatch)`."""
    return AlsaRig(tmp_path / "alsa")
