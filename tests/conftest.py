"""Fixtures shared by every test directory.

The JACK rig is one session-wide server and client: libjack keeps per-process globals,
so one test process can only talk to one JACK server, whichever directory asks for it.
"""

import pytest

from tests.rig.alsa import alsa_rig
from tests.rig.jack import jack_audio, jack_session

__all__ = ["alsa_rig", "jack_audio", "jack_session"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`fleet` tests (minutes, the [fleet] extra) run only when `-m` names them."""
    if "fleet" in (config.getoption("markexpr") or ""):
        return
    dropped = [item for item in items if item.get_closest_marker("fleet")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not item.get_closest_marker("fleet")]
