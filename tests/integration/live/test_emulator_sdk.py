"""The emulator through the real stack: google-genai SDK -> TLS WebSocket on loopback.

Each test drives the unmodified SDK the way the appliance does and checks what it sees
against the emulator's script and recorder.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.genai import errors, types

from appliance.live.emulator import Emulator, Reply, Scenario, ToolCallSpec
from tests.integration.live.conftest import fast_scenario
from tests.rig.emulator import (
    PCM_16K,
    Turn,
    absorb,
    client_for,
    collect_turn,
    send_audio,
    silence,
    speech_16k,
    tone,
)

pytestmark = pytest.mark.timeout(60)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
MANUAL = types.RealtimeInputConfig(
    automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
)


def config(**kwargs: Any) -> types.LiveConnectConfig:
    kwargs.setdefault("response_modalities", [types.Modality.AUDIO])
    return types.LiveConnectConfig(**kwargs)


async def test_full_turn_audio_in_scripted_audio_out(emu: Emulator, client: Any) -> None:
    reply_pcm = tone(610, 900)
    emu.scenario.replies.append(Reply(pcm=reply_pcm))
    speech = speech_16k()
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await send_audio(session, speech + silence(700))
        turn = await asyncio.wait_for(collect_turn(session), 20)
    assert turn.audio == reply_pcm
    assert turn.generation_complete and turn.turn_complete
    assert turn.usage.total_token_count == (
        turn.usage.prompt_token_count + turn.usage.response_token_count
    )
    assert turn.usage.response_tokens_details[0].modality == types.MediaModality.AUDIO
    # The service got exactly the bytes the client sent, in order.
    assert emu.received_audio(conn=1) == speech + silence(700)
    chunks = [r for r in emu.sent if r.kind == "serverContent.modelTurn"]
    assert len(chunks) == -(-len(reply_pcm) // 1920)  # 40 ms frames of 24 kHz PCM


async def test_three_turns_one_session_receive_per_turn(emu: Emulator, client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        for _ in range(3):
            await send_audio(session, speech_16k() + silence(700))
            turn = await asyncio.wait_for(collect_turn(session), 20)
            assert turn.turn_complete and turn.audio
    conv = emu.conversations[0]
    assert conv.turns == 3
    assert [e.role for e in conv.transcript] == ["user", "model"] * 3
    assert conv.transcript[-1].text.startswith("Turn 3:")


async def test_manual_activity_signals(emu: Emulator, client: Any) -> None:
    cfg = config(
        realtime_input_config=MANUAL, input_audio_transcription=types.AudioTranscriptionConfig()
    )
    speech = speech_16k()
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await send_audio(session, silence(200))  # outside a turn: ignored
        await session.send_realtime_input(activity_start=types.ActivityStart())
        await send_audio(session, speech)
        await session.send_realtime_input(activity_end=types.ActivityEnd())
        turn = await asyncio.wait_for(collect_turn(session), 20)
    seconds = len(speech) / 32000
    assert turn.input_transcript == f"({seconds:.1f} s of speech)"
    assert f"I heard {seconds:.1f} seconds" in emu.conversations[0].transcript[-1].text
    kinds = [r.kind for r in emu.records]
    assert kinds[0] == "setup" and "activity_start" in kinds
    assert kinds.index("activity_start") < kinds.index("activity_end")


async def test_activity_signals_with_automatic_detection_close_1007(client: Any) -> None:
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        await session.send_realtime_input(activity_start=types.ActivityStart())
        with pytest.raises(errors.APIError) as info:
            await asyncio.wait_for(collect_turn(session), 20)
    assert info.value.code == 1007


@pytest.fixture
def paced_scenario() -> Scenario:
    # Replies at 2x real time so the user can talk over them.
    return fast_scenario(realtime_factor=2.0)


async def test_automatic_detection_interruption(paced_scenario: Scenario) -> None:
    long_reply = tone(610, 4000)
    paced_scenario.replies += [Reply(pcm=long_reply), Reply(pcm=tone(730, 300))]
    async with Emulator(paced_scenario) as emu:
        client = client_for(emu.base_url, emu.ca_file, emu.api_key)
        async with client.aio.live.connect(model=MODEL, config=config()) as session:
            await send_audio(session, speech_16k() + silence(700))
            got_audio = asyncio.Event()
            turn = Turn()
            audio_before_interruption: list[int] = []

            async def receive() -> None:
                # With no turnComplete for the cut reply, this receive() runs on to the
                # end of the reply to the barge-in.
                async for msg in session.receive():
                    absorb(turn, msg)
                    if turn.audio:
                        got_audio.set()
                    if turn.interrupted and not audio_before_interruption:
                        audio_before_interruption.append(len(turn.audio))

            receiver = asyncio.create_task(receive())
            await asyncio.wait_for(got_audio.wait(), 20)
            # The user talks over the reply, paced like a microphone, then pauses.
            await send_audio(session, speech_16k() + silence(700), realtime_factor=4.0)
            await asyncio.wait_for(receiver, 20)
    assert turn.interrupted and turn.turn_complete
    cut = audio_before_interruption[0]
    assert 0 < cut < len(long_reply)
    assert turn.audio == long_reply[:cut] + tone(730, 300)
    assert emu.connections[0].interruptions == 1
    transcript = emu.conversations[0].transcript
    assert [e.interrupted for e in transcript] == [False, True, False, False]


async def test_text_modality_and_text_input(emu: Emulator, client: Any) -> None:
    cfg = config(response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await session.send_realtime_input(text="what time is it")
        turn = await asyncio.wait_for(collect_turn(session), 20)
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="and the date")])
        )
        turn2 = await asyncio.wait_for(collect_turn(session), 20)
    assert turn.audio == b""
    assert turn.text == "Turn 1: you said what time is it. This is the appliance's local emulator."
    assert turn.usage.response_tokens_details[0].modality == types.MediaModality.TEXT
    assert turn2.text.startswith("Turn 2: you said and the date.")
    assert turn2.usage.cached_content_token_count == turn.usage.total_token_count


@pytest.mark.parametrize("transcribe", [True, False])
async def test_transcription_only_when_requested(
    emu: Emulator, client: Any, transcribe: bool
) -> None:
    extra: dict[str, Any] = {}
    if transcribe:
        extra = {
            "input_audio_transcription": types.AudioTranscriptionConfig(),
            "output_audio_transcription": types.AudioTranscriptionConfig(),
        }
    emu.scenario.replies.append(Reply(text="Hello from the emulator", pcm=tone(610, 400)))
    async with client.aio.live.connect(model=MODEL, config=config(**extra)) as session:
        await send_audio(session, speech_16k() + silence(700))
        turn = await asyncio.wait_for(collect_turn(session), 20)
    if transcribe:
        assert turn.output_transcript == "Hello from the emulator"
        assert turn.input_transcript.endswith(" s of speech)")
    else:
        assert turn.output_transcript == turn.input_transcript == ""
    assert turn.audio == tone(610, 400)


async def test_tool_call_round_trip(emu: Emulator, client: Any) -> None:
    emu.scenario.replies.append(
        Reply(
            tool_call=ToolCallSpec("get_time", {"zone": "UTC"}), after_tool=Reply(text="It is noon")
        )
    )
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="get_time")])]
    cfg = config(tools=tools, response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await session.send_realtime_input(text="time?")
        first = await asyncio.wait_for(collect_turn(session), 20)
        call = first.tool_calls[0].function_calls[0]
        assert (call.name, call.args) == ("get_time", {"zone": "UTC"})
        await session.send_tool_response(
            function_responses=[
                types.FunctionResponse(id=call.id, name=call.name, response={"time": "12:00"})
            ]
        )
        turn = await asyncio.wait_for(collect_turn(session), 20)
    assert turn.text == "It is noon"
    response = emu.recorder.of("tool_response")[0].message["tool_response"]
    assert response["function_responses"][0]["response"] == {"time": "12:00"}
    assert emu.hub.conversations[0].transcript[1].role == "tool"


async def test_wrong_api_key_closes_1007(emu: Emulator) -> None:
    client = client_for(emu.base_url, emu.ca_file, "not-the-key")
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=MODEL, config=config()):
            pass
    assert info.value.code == 1007
    assert "API key not valid" in str(info.value)


async def test_resumption_restores_context_on_new_connection(emu: Emulator, client: Any) -> None:
    cfg = config(
        session_resumption=types.SessionResumptionConfig(),
        response_modalities=[types.Modality.TEXT],
    )
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        first = await asyncio.wait_for(collect_turn_after_text(session, "one"), 20)
        second = await asyncio.wait_for(collect_turn_after_text(session, "two"), 20)
    handles = first.resumption_handles + second.resumption_handles
    assert len(handles) == 2  # after setup, after turn 1 (turn 2's comes with the next receive)
    cfg2 = config(
        session_resumption=types.SessionResumptionConfig(handle=handles[-1]),
        response_modalities=[types.Modality.TEXT],
    )
    async with client.aio.live.connect(model=MODEL, config=cfg2) as session:
        third = await asyncio.wait_for(collect_turn_after_text(session, "three"), 20)
    # The handle after turn 1 carries one turn of context: this is turn 2 again.
    assert third.text.startswith("Turn 2: you said three.")
    info = emu.connections[1]
    assert info.resumed_from == handles[-1]
    assert info.conversation is not None
    assert [e.text for e in info.conversation.transcript if e.role == "user"] == ["one", "three"]


async def test_unknown_resumption_handle_starts_fresh(emu: Emulator, client: Any) -> None:
    cfg = config(
        session_resumption=types.SessionResumptionConfig(handle="no-such-handle"),
        response_modalities=[types.Modality.TEXT],
    )
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        turn = await asyncio.wait_for(collect_turn_after_text(session, "hi"), 20)
    assert turn.text.startswith("Turn 1:")
    assert emu.connections[0].unknown_handle == "no-such-handle"


async def collect_turn_after_text(session: Any, text: str) -> Any:
    await session.send_realtime_input(text=text)
    return await collect_turn(session)


async def test_video_frames_and_large_frames_are_accepted(emu: Emulator, client: Any) -> None:
    jpeg = b"\xff\xd8\xff" + bytes(1_500_000) + b"\xff\xd9"  # > 1 MiB once base64-encoded
    cfg = config(response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await session.send_realtime_input(video=types.Blob(data=jpeg, mime_type="image/jpeg"))
        turn = await asyncio.wait_for(collect_turn_after_text(session, "what do you see"), 20)
    assert turn.turn_complete
    assert emu.connections[0].video_frames == 1
    assert emu.recorder.of("video")[0].data == jpeg


async def test_recorder_timestamps_monotonic_and_complete(emu: Emulator, client: Any) -> None:
    sent_chunks = 0
    async with client.aio.live.connect(model=MODEL, config=config()) as session:
        pcm = speech_16k() + silence(700)
        await send_audio(session, pcm, chunk_ms=20)
        sent_chunks = -(-len(pcm) // 640)
        await asyncio.wait_for(collect_turn(session), 20)
    records = emu.records
    stamps = [r.t_ns for r in records]
    assert stamps == sorted(stamps)
    assert [r.kind for r in records] == ["setup"] + ["audio"] * sent_chunks
    assert {r.conn for r in records} == {1}
    assert all(r.mime_type == PCM_16K for r in records[1:])
    # The first reply frame went out after the last audio frame arrived.
    first_out = next(s for s in emu.sent if s.kind == "serverContent.modelTurn")
    assert first_out.t_ns > stamps[-1]
