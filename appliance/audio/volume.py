"""Output volume: an ALSA mixer control when configured, else software scaling.

The level (0-100 %) persists in `<state_dir>/volume.json` so a change made by voice or
`appliance` survives restarts; the config's `audio.volume` is only the first value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from appliance import state_files
from appliance.audio import dsp
from appliance.config import AudioConfig

log = logging.getLogger(__name__)

STATE_FILE = "volume.json"


class _SavedVolume(BaseModel):
    """volume.json."""

    percent: int = Field(ge=0, le=100, strict=True)


class Mixer(Protocol):
    """The part of `alsaaudio.Mixer` used here."""

    def setvolume(self, volume: int) -> None: ...


MixerFactory = Callable[[str, str | None], Mixer]


def open_alsa_mixer(control: str, card: str | None) -> Mixer:
    """`alsaaudio.Mixer` for `control` on `card` (a card name such as `seeed2micvoicec`)."""
    import alsaaudio

    from appliance.audio.alsa_quiet import silence_alsa_lib

    silence_alsa_lib()
    device = f"hw:CARD={card}" if card else "default"
    try:
        return alsaaudio.Mixer(control=control, device=device)
    except alsaaudio.ALSAAudioError as exc:
        raise OSError(
            f"ALSA mixer control {control!r} on {device!r} cannot be opened ({exc}); "
            f"list the controls with `amixer -D {device} scontrols` and set audio.mixer "
            "(or unset it for software volume)"
        ) from exc


class Volume:
    """The speaker level. `software_gain` is what playback multiplies samples by."""

    def __init__(
        self,
        config: AudioConfig,
        state_dir: Path | str | None = None,
        *,
        mixer_factory: MixerFactory = open_alsa_mixer,
    ) -> None:
        self._path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self._mixer: Mixer | None = None
        if config.mixer:
            try:
                self._mixer = mixer_factory(config.mixer, config.mixer_card)
            except OSError as exc:
                log.error("%s; using software volume", exc)
        self.percent = self._load(config.volume)
        self.floor = 0
        """A level the speaker does not go below for now, without changing the user's
        setting (a ringing timer must be heard at 5 %); `set_floor(0)` ends it."""
        self.software_gain = 1.0
        self._apply()

    @property
    def uses_mixer(self) -> bool:
        return self._mixer is not None

    def set(self, percent: int) -> int:
        """Set the level (clamped to 0-100), apply it and persist it; returns the level."""
        self.percent = max(0, min(100, int(percent)))
        self._apply()
        self._save()
        return self.percent

    def change(self, delta: int) -> int:
        return self.set(self.percent + delta)

    def set_floor(self, percent: int) -> None:
        """Play at least `percent` until `set_floor(0)`; not saved."""
        self.floor = max(0, min(100, int(percent)))
        self._apply()

    def _apply(self) -> None:
        level = max(self.percent, self.floor)
        if self._mixer is not None:
            try:
                self._mixer.setvolume(level)
                self.software_gain = 1.0
                return
            except Exception as exc:
                log.error("setting mixer volume failed (%s); using software volume", exc)
                self._mixer = None
        self.software_gain = dsp.volume_to_gain(level)

    def _load(self, default: int) -> int:
        if self._path is None:
            return default
        saved = state_files.load(self._path, _SavedVolume)
        return default if saved is None else saved.percent

    def _save(self) -> None:
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"percent": self.percent}))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.error("cannot save the volume to %s: %s", self._path, exc)
