"""Fixtures of the real-ALSA audio tests: the rig modules define them, any dir can reuse."""

from tests.rig.alsa import alsa_rig
from tests.rig.jack import jack_audio, jack_session

__all__ = ["alsa_rig", "jack_audio", "jack_session"]
