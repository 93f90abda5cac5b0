"""Fixtures shared by every test directory.

The JACK rig is one session-wide server and client: libjack keeps per-process globals,
so one test process can only talk to one JACK server, whichever directory asks for it.
"""

from tests.rig.alsa import alsa_rig
from tests.rig.jack import jack_audio, jack_session

__all__ = ["alsa_rig", "jack_audio", "jack_session"]
