"""Helpers for tests that drive the real google-genai SDK against the Live emulator.

Reusable by any part's tests: a client built the way the appliance builds it (TLS to the
emulator's CA, bigger frames allowed), real speech from alsa-utils' sample files, and a
`collect_turn` that gathers one `receive()` turn into plain values.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import wave
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.live.emulator.speech import resample

FRONT_CENTER = Path("/usr/share/sounds/alsa/Front_Center.wav")
PCM_16K = "audio/pcm;rate=16000"


def client_for(base_url: str, ca_file: Path | str, api_key: str) -> Any:
    """A `genai.Client` that trusts only the emulator's CA (no environment needed)."""
    from google import genai
    from google.genai import types

    ctx = ssl.create_default_context(cafile=str(ca_file))
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=base_url, async_client_args={"ssl": ctx, "max_size": 16 * 1024 * 1024}
        ),
    )


def wav_to_pcm(path: Path, rate: int = 16000) -> bytes:
    """16-bit mono PCM of a 16-bit mono WAV at `rate` (linear resampling)."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1, path
        data = wav.readframes(wav.getnframes())
        return resample(data, wav.getframerate(), rate)


def speech_16k() -> bytes:
    """A real human voice ("front center", about 1.4 s) at 16 kHz."""
    return wav_to_pcm(FRONT_CENTER, 16000)


def silence(ms: int, rate: int = 16000) -> bytes:
    return bytes(2 * rate * ms // 1000)


def tone(freq: float, ms: int, rate: int = 24000, amplitude: int = 8000) -> bytes:
    """A sine tone (use frequencies like 610 Hz that do not repeat every 480 frames)."""
    n = rate * ms // 1000
    return array(
        "h", (int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    ).tobytes()


async def send_audio(
    session: Any, pcm: bytes, chunk_ms: int = 20, realtime_factor: float = 0.0, rate: int = 16000
) -> None:
    """Send `pcm` as realtime audio in chunks, paced `realtime_factor` x real time (0: unpaced)."""
    from google.genai import types

    size = 2 * rate * chunk_ms // 1000
    for i in range(0, len(pcm), size):
        await session.send_realtime_input(
            audio=types.Blob(data=pcm[i : i + size], mime_type=f"audio/pcm;rate={rate}")
        )
        if realtime_factor > 0:
            await asyncio.sleep(chunk_ms / 1000 / realtime_factor)
        else:
            await asyncio.sleep(0)


@dataclass
class Turn:
    """What one `session.receive()` turn carried."""

    audio: bytes = b""
    text: str = ""
    input_transcript: str = ""
    output_transcript: str = ""
    interrupted: bool = False
    generation_complete: bool = False
    turn_complete: bool = False
    usage: Any = None
    tool_calls: list[Any] = field(default_factory=list)
    go_away: Any = None
    resumption_handles: list[str] = field(default_factory=list)
    messages: list[Any] = field(default_factory=list)


async def collect_turn(session: Any, stop_on_tool_call: bool = True) -> Turn:
    """Iterate one `receive()` (it ends at turn_complete) into a `Turn`."""
    turn = Turn()
    async for msg in session.receive():
        turn.messages.append(msg)
        absorb(turn, msg)
        if msg.tool_call is not None and stop_on_tool_call:
            break
    return turn


def absorb(turn: Turn, msg: Any) -> None:
    """Fold one LiveServerMessage into `turn`."""
    sc = msg.server_content
    if sc is not None:
        if sc.model_turn is not None:
            for part in sc.model_turn.parts or ():
                if part.inline_data is not None and part.inline_data.data:
                    turn.audio += part.inline_data.data
                if part.text:
                    turn.text += part.text
        if sc.input_transcription is not None and sc.input_transcription.text:
            turn.input_transcript += sc.input_transcription.text
        if sc.output_transcription is not None and sc.output_transcription.text:
            turn.output_transcript += sc.output_transcription.text
        turn.interrupted |= bool(sc.interrupted)
        turn.generation_complete |= bool(sc.generation_complete)
        turn.turn_complete |= bool(sc.turn_complete)
    if msg.usage_metadata is not None:
        turn.usage = msg.usage_metadata
    if msg.tool_call is not None:
        turn.tool_calls.append(msg.tool_call)
    if msg.go_away is not None:
        turn.go_away = msg.go_away
    update = msg.session_resumption_update
    if update is not None and update.new_handle:
        turn.resumption_handles.append(update.new_handle)


def received_16k(emu: Any) -> Any:
    """All the microphone audio the emulator received, as float32 at 16 kHz."""
    import numpy as np

    return np.frombuffer(emu.received_audio(), dtype="<i2").astype(np.float32) / 32768
