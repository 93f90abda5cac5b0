"""Parsing the client's frames of the Live API wire protocol into plain values.

The google-genai SDK sends a mix of casings (it camelCases the fields it knows and passes
nested dicts through in snake_case) and, depending on its version, URL-safe or standard
base64. The real service accepts all of that, so the emulator normalises every key to
snake_case and decodes either base64 alphabet before looking at a message. Payloads the
model owns (function `args`, tool `response` bodies, JSON schemas) are left untouched.

Errors a client can cause are raised as `ProtocolError(code, reason)`: the server turns
them into a WebSocket close frame, the only way the real service reports errors.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

# Close codes the real service uses.
CLOSE_INVALID = 1007
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011

# Keys whose values belong to the application, not to the protocol: never renamed.
_OPAQUE_KEYS = frozenset(
    {"args", "response", "parameters", "parameters_json_schema", "response_json_schema"}
)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
INVALID_FUNCTION_NAME = (
    "Must start with a letter or an underscore. Must be alphameric "
    "(a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum "
    "length of 64."
)


class ProtocolError(Exception):
    """A client mistake the server answers by closing with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def snake(key: str) -> str:
    """`realtimeInputConfig` -> `realtime_input_config`; snake_case keys pass unchanged."""
    return _CAMEL_RE.sub(r"_\1", key).lower()


def normalise(value: Any) -> Any:
    """Return `value` with every dict key in snake_case, except inside opaque payloads."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = snake(key) if isinstance(key, str) else key
            out[name] = item if name in _OPAQUE_KEYS else normalise(item)
        return out
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def b64decode(data: str) -> bytes:
    """Decode standard or URL-safe base64, with or without padding.

    Raises ProtocolError(1007) for anything else, as the real service rejects a frame
    whose bytes field does not decode.
    """
    if not isinstance(data, str):
        raise ProtocolError(CLOSE_INVALID, "Invalid value: bytes field is not a base64 string.")
    text = data.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            CLOSE_INVALID, f"Invalid value: bytes field is not valid base64 ({exc})."
        ) from exc


def b64encode(data: bytes) -> str:
    """Standard base64, as the real service sends reply audio."""
    return base64.b64encode(data).decode("ascii")


def rate_of(mime_type: str | None, default: int = 16000) -> int:
    """The sample rate a PCM mime type states (`audio/pcm;rate=16000`), else `default`."""
    if mime_type:
        match = re.search(r"rate\s*=\s*(\d+)", mime_type)
        if match:
            return int(match.group(1))
    return default


@dataclass(frozen=True, slots=True)
class Blob:
    """Decoded inline bytes with their mime type."""

    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class Setup:
    """The fields of the first frame the emulator acts on (the rest stays in `raw`)."""

    model: str
    modalities: tuple[str, ...] = ("AUDIO",)
    automatic_activity_detection: bool = True
    session_resumption: bool = False
    resume_handle: str | None = None
    transparent: bool = False
    """`sessionResumption.transparent`: report the consumed message index in updates."""
    input_transcription: bool = False
    output_transcription: bool = False
    system_instruction: str = ""
    function_names: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RealtimeInput:
    """One `realtime_input` message: exactly one of its fields is set by the SDK."""

    audio: Blob | None = None
    video: Blob | None = None
    text: str | None = None
    activity_start: bool = False
    activity_end: bool = False
    audio_stream_end: bool = False
    media_chunks: tuple[Blob, ...] = ()


@dataclass(frozen=True, slots=True)
class ClientContent:
    """`client_content`: whole turns of text (and inline data) plus `turn_complete`."""

    texts: tuple[str, ...] = ()
    turn_complete: bool = False


@dataclass(frozen=True, slots=True)
class ToolResponse:
    """`tool_response`: the answers to the model's function calls."""

    responses: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Other:
    """A message the emulator records but does not act on (e.g. `context_update`)."""

    kind: str


ClientMessage = Setup | RealtimeInput | ClientContent | ToolResponse | Other


def load(frame: str | bytes) -> dict[str, Any]:
    """Parse a frame's JSON and normalise its keys; a broken frame closes with 1007."""
    try:
        data = json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(CLOSE_INVALID, f"Invalid JSON payload received. {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(CLOSE_INVALID, "Invalid JSON payload received. Expected an object.")
    return dict(normalise(data))


def _blob(value: Any, default_mime: str) -> Blob:
    if not isinstance(value, dict) or "data" not in value:
        raise ProtocolError(CLOSE_INVALID, "Invalid value: blob without data.")
    return Blob(b64decode(value["data"]), str(value.get("mime_type") or default_mime))


def _parts_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts") or []
    return " ".join(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)


def parse_setup(message: dict[str, Any]) -> Setup:
    """Read the setup frame (already normalised); anything else first is a 1007."""
    setup = message.get("setup")
    if not isinstance(setup, dict):
        raise ProtocolError(CLOSE_INVALID, "Invalid argument: the first message must be setup.")
    model = setup.get("model")
    if not isinstance(model, str) or not model:
        raise ProtocolError(CLOSE_INVALID, "Invalid argument: setup.model is required.")
    generation = setup.get("generation_config") or {}
    modalities = tuple(str(m).upper() for m in generation.get("response_modalities") or ())
    realtime = setup.get("realtime_input_config") or {}
    aad = (realtime.get("automatic_activity_detection") or {}).get("disabled") is not True
    resumption = setup.get("session_resumption")
    handle = resumption.get("handle") if isinstance(resumption, dict) else None
    names: list[str] = []
    for t, tool in enumerate(setup.get("tools") or ()):
        for d, decl in enumerate((tool or {}).get("function_declarations") or ()):
            if isinstance(decl, dict) and decl.get("name"):
                if not _FUNCTION_NAME_RE.match(str(decl["name"])):
                    raise ProtocolError(
                        CLOSE_INVALID,
                        f"Invalid function name {decl['name']!r} (tools[{t}]."
                        f"function_declarations[{d}]). {INVALID_FUNCTION_NAME}",
                    )
                names.append(str(decl["name"]))
    return Setup(
        model=model,
        modalities=modalities or ("AUDIO",),
        automatic_activity_detection=aad,
        session_resumption=isinstance(resumption, dict),
        resume_handle=str(handle) if handle else None,
        transparent=isinstance(resumption, dict) and resumption.get("transparent") is True,
        input_transcription=setup.get("input_audio_transcription") is not None,
        output_transcription=setup.get("output_audio_transcription") is not None,
        system_instruction=_parts_text(setup.get("system_instruction")),
        function_names=tuple(names),
        raw=setup,
    )


def parse(message: dict[str, Any]) -> ClientMessage:
    """Turn a normalised client message (after setup) into one of the plain values."""
    if "realtime_input" in message:
        rt = message["realtime_input"] or {}
        if "media_chunks" in rt:
            chunks = tuple(_blob(c, "audio/pcm") for c in rt.get("media_chunks") or ())
            return RealtimeInput(media_chunks=chunks)
        return RealtimeInput(
            audio=_blob(rt["audio"], "audio/pcm;rate=16000") if "audio" in rt else None,
            video=_blob(rt["video"], "image/jpeg") if "video" in rt else None,
            text=str(rt["text"]) if "text" in rt else None,
            activity_start="activity_start" in rt,
            activity_end="activity_end" in rt,
            audio_stream_end=bool(rt.get("audio_stream_end")),
        )
    if "client_content" in message:
        cc = message["client_content"] or {}
        texts = tuple(t for t in (_parts_text(turn) for turn in cc.get("turns") or ()) if t)
        return ClientContent(texts=texts, turn_complete=bool(cc.get("turn_complete")))
    if "tool_response" in message:
        tr = message["tool_response"] or {}
        return ToolResponse(tuple(r for r in tr.get("function_responses") or () if r))
    if "setup" in message:
        raise ProtocolError(CLOSE_INVALID, "Invalid argument: setup must be sent only once.")
    kinds = ", ".join(sorted(message)) or "(empty)"
    return Other(kinds)
