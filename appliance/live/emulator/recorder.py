"""What the client sent and when: the emulator's evidence for tests and benchmarks.

Every client frame becomes a `Record` stamped with `time.monotonic_ns()` on arrival and
the connection's id, with its bytes fields decoded, so a test can check exactly what
reached the "service" (audio bytes, order of turn signals, timing on one clock). Server
frames are logged too (without their audio payloads) for latency measurements.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """One client message as received."""

    t_ns: int
    conn: int
    kind: str
    """`setup`, `audio`, `video`, `text`, `activity_start`, `activity_end`,
    `audio_stream_end`, `media_chunks`, `client_content`, `tool_response`, `other`, or
    `invalid` for a frame that could not be parsed."""
    message: dict[str, Any] = field(repr=False)
    """The frame's JSON with keys normalised to snake_case (bytes still base64)."""
    data: bytes | None = field(default=None, repr=False)
    """Decoded audio / video / media bytes, if the message carried any."""
    mime_type: str | None = None
    raw: str | None = field(default=None, repr=False)
    """The frame exactly as received, when the recorder keeps raw frames."""
    index: int | None = None
    """Position in its connection's client stream: setup 0, then 1, 2, ... (the count
    `lastConsumedClientMessageIndex` uses)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One server message as sent: its kind(s) and, for audio, how many bytes."""

    t_ns: int
    conn: int
    kind: str
    audio_bytes: int = 0
    text: str | None = None


class Recorder:
    """Thread-safe append-only logs; `limit` bounds memory for long demo runs."""

    def __init__(self, keep_raw: bool = True, limit: int | None = None) -> None:
        self.keep_raw = keep_raw
        self._lock = threading.Lock()
        self._records: deque[Record] = deque(maxlen=limit)
        self._sent: deque[Sent] = deque(maxlen=limit)

    def add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)

    def add_sent(self, sent: Sent) -> None:
        with self._lock:
            self._sent.append(sent)

    @staticmethod
    def now() -> int:
        return time.monotonic_ns()

    @property
    def records(self) -> list[Record]:
        """A snapshot of all client records, in arrival order."""
        with self._lock:
            return list(self._records)

    @property
    def sent(self) -> list[Sent]:
        """A snapshot of all server messages, in sending order."""
        with self._lock:
            return list(self._sent)

    def of(
        self, kind: str | Iterable[str], conn: int | None = None, *, since_ns: int = 0
    ) -> list[Record]:
        """Records of one kind (or several), optionally of one connection, or received
        after `since_ns` (a long run checks its records a window at a time)."""
        kinds = {kind} if isinstance(kind, str) else set(kind)
        return [
            r
            for r in self.records
            if r.kind in kinds and (conn is None or r.conn == conn) and r.t_ns > since_ns
        ]

    def received_audio(self, conn: int | None = None) -> bytes:
        """All audio bytes the client sent (realtime audio and legacy media chunks)."""
        return b"".join(
            r.data
            for r in self.of(("audio", "media_chunks"), conn)
            if r.data is not None
            and (r.kind == "audio" or (r.mime_type or "audio/").startswith("audio/"))
        )
