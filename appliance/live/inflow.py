"""What comes in from the Live API, before the SDK parses it: frames that carry nothing
are dropped, and the daemon's loop gets its turn however fast frames arrive.

Why: the google-genai SDK turns every frame into a pydantic `LiveServerMessage` (about
0.4 ms each under the profiler on the x86 dev box, more on a Pi), and `session.receive()`
never yields to the event loop while websockets has frames queued, which it fills from
one TLS read by the thousand. A server flooding tiny messages (7,600 a second from the
emulator's FLOOD fault) held the loop for seconds at a time: `status` on the control
socket took up to 4.5 s and the daemon ended the turn 1.8 s after the flood did
(bench/results/flood.md).

`Inflow` wraps the session's websocket (the SDK reads `session._ws.recv()`): each
`recv()` first yields to the loop if it has held it for a few milliseconds
(`appliance.breather`), then returns the next frame that means something. A frame that
means nothing is a `serverContent` and nothing else whose every field is empty (no
parts, no transcription text, no flag set): the SDK would parse it and the client would
do nothing with it. Anything else, including a frame this module cannot read, goes to
the SDK as it came.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from appliance.breather import Breather

log = logging.getLogger(__name__)

REPORT_AFTER = 1000
"""Empty frames on one connection before it is logged (once per connection)."""


def carries_nothing(frame: bytes | str) -> bool:
    """True for a frame that is only a `serverContent` with every field empty (a nested
    one too: a transcription with no text but `finished` set carries the flag)."""
    if len(frame) > 512:  # anything that big carries something; not worth parsing twice
        return False
    try:
        message = json.loads(frame)
    except ValueError:
        return False  # the SDK raises its own error for it
    if not isinstance(message, dict) or list(message) != ["serverContent"]:
        return False
    content = message["serverContent"]
    return isinstance(content, dict) and _empty(content)


def _empty(value: Any) -> bool:
    """None, false, "", [], or a map of such (a model turn's `role` alone says nothing)."""
    if value is None or value is False:
        return True
    if isinstance(value, dict):
        return all(_empty(item) for key, item in value.items() if key != "role")
    return isinstance(value, str | list) and not value


class Inflow:
    """A session websocket's `recv()` that skips empty frames and lets the loop breathe."""

    def __init__(self, ws: Any, connection: int = 0) -> None:
        self._ws = ws
        self._connection = connection
        self._breather = Breather()
        self.dropped = 0
        """Frames dropped unparsed on this connection."""

    @classmethod
    def install(cls, session: Any, connection: int = 0) -> Inflow | None:
        """Put an `Inflow` between the SDK session and its websocket; None (and the SDK
        reads as it always did) if this SDK version keeps it elsewhere."""
        ws = getattr(session, "_ws", None)
        if ws is None or not hasattr(ws, "recv"):
            log.debug("the SDK session has no _ws: frames are not filtered")
            return None
        inflow = cls(ws, connection)
        session._ws = inflow
        return inflow

    async def recv(self, decode: bool | None = None) -> Any:
        while True:
            await self._breather.breathe()
            # `decode` only when given: the SDK retries without it on TypeError (a
            # websockets client that has none), and that retry must reach the socket bare.
            frame = await (self._ws.recv() if decode is None else self._ws.recv(decode=decode))
            if not carries_nothing(frame):
                return frame
            self.dropped += 1
            if self.dropped == REPORT_AFTER:
                log.warning(
                    "the Live API sent %d messages that carried nothing on connection %d; "
                    "dropping such messages unparsed",
                    self.dropped,
                    self._connection,
                )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)  # send, close, ...: the websocket's own
