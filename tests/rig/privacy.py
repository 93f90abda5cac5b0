"""The privacy rule as a check every end-to-end run passes: microphone audio and camera
frames reach the service only while the LEDs show a conversation.

`PrivacyWatch` keeps the appliance's state timeline (as `on_state` reports it, which is
when the LEDs change); `violations()` lists every audio or video message the emulator
received outside a conversation. A message may arrive up to `GRACE_NS` after the state
left it (the last period in flight when the microphone stops).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from appliance.live.emulator.recorder import Recorder

CONVERSATION = frozenset({"connecting", "listening", "thinking", "speaking"})
MEDIA = ("audio", "video", "media_chunks")
GRACE_NS = 1_000_000_000


@dataclass
class PrivacyWatch:
    """The appliance's state changes, stamped on the clock the emulator stamps with."""

    timeline: list[tuple[int, str]] = field(default_factory=list)
    started_ns: int = field(default_factory=time.monotonic_ns)
    ended_ns: int | None = None

    def saw(self, state: str) -> None:
        self.timeline.append((time.monotonic_ns(), state))

    def end(self) -> None:
        self.ended_ns = time.monotonic_ns()

    def _open_windows(self) -> list[tuple[int, int]]:
        windows: list[tuple[int, int]] = []
        opened: int | None = None
        for t, state in self.timeline:
            if state in CONVERSATION and opened is None:
                opened = t
            elif state not in CONVERSATION and opened is not None:
                windows.append((opened, t + GRACE_NS))
                opened = None
        if opened is not None:
            windows.append((opened, (self.ended_ns or time.monotonic_ns()) + GRACE_NS))
        return windows

    def violations(self, recorder: Recorder) -> list[str]:
        """Each media message received outside a conversation, as a line."""
        windows = self._open_windows()
        end = self.ended_ns or time.monotonic_ns()
        found = []
        for record in recorder.of(MEDIA):
            if not self.started_ns <= record.t_ns <= end + GRACE_NS:
                continue  # another appliance's (a restart in the same test)
            if not any(a <= record.t_ns <= b for a, b in windows):
                at = (record.t_ns - self.started_ns) / 1e9
                found.append(f"{record.kind} ({len(record.data or b'')} bytes) at {at:.2f} s")
        return found
