"""Raw frames on the wire: both casings, both base64 alphabets, paths, key placement.

A plain `websockets` client sends exactly the JSON a test writes, so the emulator's
tolerance (the SDK mixes casings; 1.x used standard base64, 3.x URL-safe) is checked
independently of what any one SDK version happens to send.
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from appliance.live.emulator import Emulator
from tests.rig.emulator import silence, speech_16k

pytestmark = pytest.mark.timeout(60)

MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"


def url(emu: Emulator, version: str = "v1beta", method: str = "BidiGenerateContent") -> str:
    host = emu.base_url.removeprefix("https://")
    return f"wss://{host}/ws/google.ai.generativelanguage.{version}.GenerativeService.{method}"


def tls(emu: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emu.ca_file))


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    frame = await ws.recv()
    data: dict[str, Any] = json.loads(frame)
    return data


async def until_turn_complete(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    while True:
        msg = await recv_json(ws)
        messages.append(msg)
        if msg.get("serverContent", {}).get("turnComplete"):
            return messages


CASES = {
    "camel+standard": (
        {
            "setup": {
                "model": MODEL,
                "generationConfig": {"responseModalities": ["AUDIO"]},
                "inputAudioTranscription": {},
            }
        },
        lambda b: {
            "realtimeInput": {
                "audio": {"data": base64.b64encode(b).decode(), "mimeType": "audio/pcm;rate=16000"}
            }
        },
    ),
    "snake+urlsafe": (
        {
            "setup": {
                "model": MODEL,
                "generation_config": {"response_modalities": ["AUDIO"]},
                "input_audio_transcription": {},
            }
        },
        lambda b: {
            "realtime_input": {
                "audio": {
                    "data": base64.urlsafe_b64encode(b).decode(),
                    "mime_type": "audio/pcm;rate=16000",
                }
            }
        },
    ),
    "snake+urlsafe-unpadded": (
        {"setup": {"model": MODEL, "input_audio_transcription": {}}},
        lambda b: {
            "realtime_input": {"audio": {"data": base64.urlsafe_b64encode(b).decode().rstrip("=")}}
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_both_casings_and_base64_alphabets(emu: Emulator, case: str) -> None:
    setup, audio_frame = CASES[case]
    pcm = speech_16k() + silence(700)
    pieces = [pcm[i : i + 641] for i in range(0, len(pcm), 641)]  # odd sizes: padding varies
    headers = {"x-goog-api-key": emu.api_key}
    async with connect(url(emu), ssl=tls(emu), additional_headers=headers) as ws:
        await ws.send(json.dumps(setup))
        assert await recv_json(ws) == {"setupComplete": {}}
        for piece in pieces:
            await ws.send(json.dumps(audio_frame(piece)))
        messages = await until_turn_complete(ws)
    assert emu.received_audio() == pcm
    transcripts = [m["serverContent"]["inputTranscription"] for m in messages[:1]]
    assert transcripts[0]["text"].endswith("s of speech)")
    audio_parts = [
        m["serverContent"]["modelTurn"]["parts"][0]["inlineData"]
        for m in messages
        if "modelTurn" in m.get("serverContent", {})
    ]
    assert audio_parts and all(p["mimeType"] == "audio/pcm;rate=24000" for p in audio_parts)


async def test_snake_case_manual_activity_and_text_modality(emu: Emulator) -> None:
    setup = {
        "setup": {
            "model": MODEL,
            "generation_config": {"response_modalities": ["TEXT"]},
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        }
    }
    headers = {"x-goog-api-key": emu.api_key}
    async with connect(url(emu, "v1"), ssl=tls(emu), additional_headers=headers) as ws:
        await ws.send(json.dumps(setup))
        await recv_json(ws)
        await ws.send(json.dumps({"realtime_input": {"activity_start": {}}}))
        data = base64.b64encode(bytes(3200)).decode()
        await ws.send(json.dumps({"realtimeInput": {"audio": {"data": data}}}))
        await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
        messages = await until_turn_complete(ws)
    text = "".join(
        part["text"]
        for m in messages
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    )
    assert text == "Turn 1: I heard 0.1 seconds of you. This is the appliance's local emulator."
    assert [r.kind for r in emu.records] == ["setup", "activity_start", "audio", "activity_end"]


async def test_server_frames_are_binary_camel_case_json(emu: Emulator) -> None:
    headers = {"x-goog-api-key": emu.api_key}
    async with connect(url(emu, "v1alpha"), ssl=tls(emu), additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL, "sessionResumption": {}}}))
        first, second = await ws.recv(), await ws.recv()
    assert isinstance(first, bytes) and json.loads(first) == {"setupComplete": {}}
    update = json.loads(second)["sessionResumptionUpdate"]
    assert update["resumable"] is True and update["newHandle"]


async def test_legacy_media_chunks_close_1007(emu: Emulator) -> None:
    headers = {"x-goog-api-key": emu.api_key}
    chunk = {"data": base64.b64encode(bytes(2048)).decode(), "mime_type": "audio/pcm"}
    async with connect(url(emu), ssl=tls(emu), additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        await recv_json(ws)
        await ws.send(json.dumps({"realtime_input": {"media_chunks": [chunk]}}))
        with pytest.raises(ConnectionClosedError) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    assert "media_chunks" in info.value.rcvd.reason
    assert emu.recorder.of("media_chunks")[0].data == bytes(2048)


async def test_key_in_query_string_is_accepted(emu: Emulator) -> None:
    async with connect(url(emu) + f"?key={emu.api_key}", ssl=tls(emu)) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        assert await recv_json(ws) == {"setupComplete": {}}


async def test_unknown_path_is_404(emu: Emulator) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url(emu, "v9"), ssl=tls(emu)):
            pass
    assert info.value.response.status_code == 404


async def test_invalid_json_and_bad_base64_close_1007(emu: Emulator) -> None:
    headers = {"x-goog-api-key": emu.api_key}
    for frame in ("{not json", json.dumps({"realtime_input": {"audio": {"data": "%%%"}}})):
        async with connect(url(emu), ssl=tls(emu), additional_headers=headers) as ws:
            await ws.send(json.dumps({"setup": {"model": MODEL}}))
            await recv_json(ws)
            await ws.send(frame)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    assert [r.kind for r in emu.records].count("invalid") == 2


async def test_legacy_media_chunks_accepted_when_scenario_allows(emu: Emulator) -> None:
    # Retired models took media_chunks; the seed article's client still sends them.
    emu.scenario.accept_media_chunks = True
    pcm = speech_16k() + silence(700)
    headers = {"x-goog-api-key": emu.api_key}
    async with connect(url(emu), ssl=tls(emu), additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": MODEL}}))
        await recv_json(ws)
        for i in range(0, len(pcm), 2048):
            chunk = {"data": base64.b64encode(pcm[i : i + 2048]).decode(), "mime_type": "audio/pcm"}
            await ws.send(json.dumps({"realtime_input": {"media_chunks": [chunk]}}))
        messages = await until_turn_complete(ws)
    assert messages[-1]["usageMetadata"]["promptTokenCount"] > 0
    assert emu.received_audio() == pcm
