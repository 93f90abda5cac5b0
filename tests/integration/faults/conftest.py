"""The fault tests use the daemon's fixtures (mock pins, the emulator)."""

from tests.integration.daemon.conftest import emu, pins

__all__ = ["emu", "pins"]
