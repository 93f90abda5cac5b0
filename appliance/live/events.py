"""The small set of typed events the rest of the appliance sees from a Live session.

The google-genai SDK hands us `LiveServerMessage` objects with a dozen optional fields;
the daemon should not need to know that shape. `appliance.live.client` turns every
server message into zero or more of these plain, immutable events, so the conversation
logic is a `match` over a handful of cases and tests can build events by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of the spoken reply: 24 kHz, 16-bit little-endian mono PCM."""

    pcm: bytes
    received_ns: int
    """`time.monotonic_ns()` when the client took the chunk off the socket."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """Text of what the user said (`user`) or of what the model is saying (`model`)."""

    role: Literal["user", "model"]
    text: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The server heard the user talk over the reply: stop playing it at once."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one turn, as `usageMetadata` reports them."""

    prompt_tokens: int = 0
    response_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    thoughts_tokens: int = 0
    by_modality: dict[str, int] = field(default_factory=dict)
    """`"prompt:AUDIO" -> n`, `"response:AUDIO" -> n`, ... summed over the details lists."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model has finished its turn; `usage` is None when the server sent none."""

    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One function the model asks us to run locally."""

    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for these calls; answer with `LiveClient.send_tool_response`."""

    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancelled:
    """The model no longer wants the answers to these call ids (the user interrupted)."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The connection ended unexpectedly; the client is reconnecting on its own."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """A new connection is up; `resumed` says whether the old context came with it."""

    resumed: bool


@dataclass(frozen=True, slots=True)
class Offline:
    """Reconnecting failed for longer than the client will try; the session is over.

    Unlike `FatalError` the cause is probably passing (network down, service busy): the
    next conversation may well work.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class FatalError:
    """The session cannot go on and retrying will not help (bad key, unknown model...).

    `message` says what to fix; `code` is the WebSocket close code when there was one.
    """

    message: str
    code: int | None = None


LiveEvent = (
    AudioChunk
    | Transcript
    | Interrupted
    | TurnComplete
    | ToolCall
    | ToolCallCancelled
    | SessionLost
    | SessionResumed
    | Offline
    | FatalError
)
