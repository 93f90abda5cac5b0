"""What the emulator answers and how it misbehaves: scripted by tests, plain data.

A `Scenario` holds the replies (per conversation turn, or one default), the pacing of
reply audio, the activity detector's thresholds, the accepted models, and a list of
`Fault`s aimed at the Nth connection and/or the Nth turn of a connection. The server
reads it; tests may change it between connections (`emu.scenario.faults.append(...)`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .vad import VadConfig

DEFAULT_MODELS = ("gemini-*live*", "*native-audio*")


@dataclass(frozen=True, slots=True)
class ToolCallSpec:
    """A function call the model makes before its (next) reply."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    """The call id; None gives `fc-<conversation turn>`."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One model turn. Every field is optional; None means "the emulator's default".

    `pcm` (24 kHz 16-bit mono) is sent as is; otherwise `text` is spoken (AUDIO modality)
    or sent as text parts (TEXT modality). The default text reports what was heard and the
    turn number. `tool_call` is made first; `after_tool` is the reply that follows the
    client's tool response (default: a generated one mentioning the response).
    """

    text: str | None = None
    pcm: bytes | None = None
    think_ms: int | None = None
    tool_call: ToolCallSpec | None = None
    after_tool: Reply | None = None


class FaultKind(Enum):
    """Misbehaviours of the real service a client must survive."""

    BAD_KEY = "bad_key"
    """Close 1007 "API key not valid..." right after setup."""
    UNKNOWN_MODEL = "unknown_model"
    """Close 1008 "models/X is not found..." right after setup."""
    INTERNAL = "internal"
    """Close 1011 "Internal error encountered." (after setup, or mid-reply for a turn)."""
    DROP = "drop"
    """Abort the TCP connection with no close frame (mid-reply for a turn): the SDK sees 1006."""
    GO_AWAY = "go_away"
    """Send `goAway{timeLeft}`, then close with `go_away_close_code` when the time is up."""
    NO_SETUP_COMPLETE = "no_setup_complete"
    """Never answer setup (the SDK's connect() then waits forever: clients need a timeout)."""
    MALFORMED = "malformed"
    """Send a frame that is not JSON (the SDK raises ValueError "Failed to parse response")."""
    UNKNOWN_MESSAGE = "unknown_message"
    """Send `{"error": {...}}`, a frame with no known top-level key (the SDK raises)."""
    NO_TURN_COMPLETE = "no_turn_complete"
    """(At a turn.) Send the reply's audio, then neither generationComplete nor
    turnComplete: the turn never ends by itself."""
    STALL_AFTER_TOOL_RESPONSE = "stall_after_tool_response"
    """(At a turn with a tool call.) After the function response, wait for more realtime
    input before going on, as Gemini 3.x was seen to do (pipecat): a client that sends
    nothing after its tool response waits forever."""
    CLOSE_NORMAL = "close_normal"
    """Close 1000 with no reason, as a service that ends a session "cleanly" would."""
    FREEZE = "freeze"
    """Stop reading and answering: no frames, no pongs, no close handshake (a hung
    server, or a link that went dead without a reset)."""
    FLOOD = "flood"
    """(At a turn.) Before the reply, send valid but useless messages as fast as the
    connection takes them for `flood_s` seconds (an empty `serverContent` and an empty
    output transcription in turn; with `flood_audio` also one sample of silent audio),
    then the reply as usual:
    a client that handles each message too slowly falls behind, or starves its loop."""


@dataclass(slots=True)
class Fault:
    """A fault aimed at connection number `connection` (1-based, None = every one) and,
    with `turn` (1-based within that connection), at that turn's reply instead of setup."""

    kind: FaultKind
    connection: int | None = None
    turn: int | None = None
    time_left_s: float = 1.0
    """GO_AWAY: the advertised (and real) time before the close."""
    junk_bytes: int = 0
    """MALFORMED: how much of the broken frame follows its start (a huge bad frame)."""
    once: bool = True
    """Fire only once over the emulator's life (so a reconnect succeeds)."""
    at_message: int | None = None
    """Aim at a client message instead of setup or a turn: the one at this position on
    the connection (1 = the first after setup, the count of `lastConsumedClientMessage
    Index`). DROP and INTERNAL end the connection before it is consumed, so a handle
    leaves out it and every message since the last resumption update (with periodic
    updates every U messages, `at_message % U` of them, plus what the client sent after
    it): the tail a transparent client must resend. GO_AWAY sends goAway once it is
    consumed."""
    after_setup_s: float | None = None
    """Break the connection this long after the client's first message after setup
    (so it certainly saw its setupComplete: a TCP reset can take unread data with it)
    instead of at setup or a turn: the client is set up, then the connection fails
    (DROP, INTERNAL, MALFORMED, UNKNOWN_MESSAGE, CLOSE_NORMAL, FREEZE). With
    `once=False` every connection does."""
    flood_s: float = 2.0
    """FLOOD: how long the flood lasts."""
    flood_audio: bool = False
    """FLOOD: every third message is one sample of silent audio (it plays: not dropped)."""
    fired: int = 0

    def matches(self, connection: int, turn: int | None, message: int | None = None) -> bool:
        if self.once and self.fired:
            return False
        if self.connection is not None and self.connection != connection:
            return False
        if self.at_message is not None or message is not None:
            return self.at_message == message
        return self.turn == turn


ReplyScript = Callable[[int, str], Reply | None]
"""`(conversation turn, what was heard) -> Reply or None` for the default."""


@dataclass(slots=True)
class Scenario:
    """Everything scriptable about the emulated service."""

    replies: list[Reply] = field(default_factory=list)
    """Reply for conversation turn N is `replies[N-1]`; past the end, `default_reply`."""
    default_reply: Reply = field(default_factory=Reply)
    script: ReplyScript | None = None
    """If set, called first for every turn; returning None falls back to the lists."""
    think_ms: int = 150
    """Delay between the end of the user's turn and the first reply frame."""
    chunk_ms: int = 40
    """Reply audio per `serverContent` frame."""
    realtime_factor: float = 4.0
    """Reply audio is sent this many times faster than real time (0 = as fast as possible)."""
    vad: VadConfig = field(default_factory=VadConfig)
    models: tuple[str, ...] = DEFAULT_MODELS
    """Glob patterns of model names accepted (without the `models/` prefix)."""
    faults: list[Fault] = field(default_factory=list)
    go_away_close_code: int = 1011
    go_away_close_reason: str = "Deadline expired before operation could complete."
    strict_activity: bool = True
    """Close 1007 on activity signals that do not match the setup's activity detection."""
    accept_media_chunks: bool = False
    """Treat legacy `media_chunks` audio as `audio` (as retired models did) instead of 1007."""
    update_every_messages: int = 10
    """With transparent resumption, a `sessionResumptionUpdate` (with the consumed index)
    after this many client messages since the last one, when no reply is in progress;
    0: only after setup and after each turn. The service's own rhythm is undocumented;
    counting messages keeps tests deterministic."""
    output_mime: str | None = None
    """The reply audio's mimeType; None: `audio/pcm;rate=24000` (a fault: a label that does
    not match the service's usual output, e.g. 48 kHz PCM or audio/mpeg)."""
    use_espeak: bool = True
    voice: str = "en-us"

    def model_allowed(self, model: str) -> bool:
        name = model.removeprefix("models/")
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.models)

    def reply_for(self, turn: int, heard: str) -> Reply:
        """The scripted reply of conversation turn `turn` (1-based)."""
        if self.script is not None:
            scripted = self.script(turn, heard)
            if scripted is not None:
                return scripted
        if 0 < turn <= len(self.replies):
            return self.replies[turn - 1]
        return self.default_reply

    def take_fault(
        self, connection: int, turn: int | None, message: int | None = None
    ) -> Fault | None:
        """The first fault aimed here (`message`: at that client message), marked as fired."""
        for fault in self.faults:
            if fault.matches(connection, turn, message):
                fault.fired += 1
                return fault
        return None
