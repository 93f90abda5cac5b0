"""How long the daemon's control socket takes to answer, measured from outside its loop.

`StatusProbe` asks `status` over the control socket again and again from a thread of
its own (the CLI's client), so a daemon loop that is busy shows as slow answers instead
of stopping the measurement with it. Tests and bench/flood.py read the samples.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Sample:
    """One `status` request: when it was sent (monotonic s) and how long the answer took."""

    sent: float
    latency: float
    state: str


@dataclass
class StatusProbe:
    """Asks `status` every `every_s` (after the previous answer) until stopped."""

    path: Path
    every_s: float = 0.1
    timeout_s: float = 60.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> StatusProbe:
        self._thread = threading.Thread(target=self._run, name="status-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s)
        return self.samples

    def between(self, start: float, end: float) -> list[Sample]:
        """Samples sent in [start, end] (monotonic seconds)."""
        return [s for s in self.samples if start <= s.sent <= end]

    def _run(self) -> None:
        from appliance.daemon.control import ControlClient

        client = ControlClient(self.path, timeout_s=self.timeout_s)
        while not self._stop.is_set():
            sent = time.monotonic()
            answer = client.status()
            self.samples.append(Sample(sent, time.monotonic() - sent, str(answer["state"])))
            self._stop.wait(self.every_s)
