"""The appliance's Live client, on the real google-genai SDK, against the emulator over TLS.

Each test drives `LiveClient` exactly as the daemon does and checks both sides: the
events the client produced and what the emulator recorded on the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from appliance.config import LiveConfig
from appliance.live import events as ev
from appliance.live.client import LiveClient
from appliance.live.emulator import Emulator, Fault, FaultKind, Reply, Scenario, ToolCallSpec
from appliance.live.errors import LiveFatalError, LiveUnavailableError
from tests.rig.emulator import silence, speech_16k, tone

pytestmark = pytest.mark.timeout(60)

PERIOD = 640  # 20 ms of 16 kHz 16-bit mono


def fast_scenario(**kwargs: Any) -> Scenario:
    """Short think time, quick replies and tones: fast, deterministic tests."""
    return Scenario(**{"think_ms": 20, "realtime_factor": 20.0, "use_espeak": False, **kwargs})


def live_config(emu: Emulator, **overrides: Any) -> LiveConfig:
    values: dict[str, Any] = {
        "endpoint": emu.base_url,
        "ca_file": emu.ca_file,
        "setup_timeout_s": 5.0,
        "model": "gemini-2.5-flash-native-audio-preview-12-2025",
    }
    values.update(overrides)
    return LiveConfig(**values)


def make_client(emu: Emulator, key: str | None = None, **kwargs: Any) -> LiveClient:
    cfg = kwargs.pop("config", None) or live_config(emu)
    kwargs.setdefault("backoff_base_s", 0.05)
    return LiveClient(cfg, SecretStr(key or emu.api_key), **kwargs)


def send_speech(client: LiveClient, pcm: bytes) -> None:
    for i in range(0, len(pcm), PERIOD):
        client.send_audio(pcm[i : i + PERIOD])


async def next_turn(stream: AsyncIterator[ev.LiveEvent]) -> list[ev.LiveEvent]:
    """Events up to and including the next TurnComplete."""
    seen: list[ev.LiveEvent] = []
    async with asyncio.timeout(20):
        async for event in stream:
            seen.append(event)
            if isinstance(event, ev.TurnComplete | ev.FatalError | ev.Offline):
                return seen
    raise AssertionError(f"stream ended before the turn did: {seen}")


def audio_of(seen: list[ev.LiveEvent]) -> bytes:
    return b"".join(e.pcm for e in seen if isinstance(e, ev.AudioChunk))


UTTERANCE = speech_16k() + silence(700)


async def test_full_turn_audio_in_and_out_byte_for_byte() -> None:
    reply = tone(610, 900)
    async with (
        Emulator(fast_scenario(replies=[Reply(pcm=reply, text="six ten")])) as emu,
        make_client(emu) as client,
    ):
        stream = client.events()
        send_speech(client, UTTERANCE)
        seen = await next_turn(stream)
        assert audio_of(seen) == reply
        said = "".join(e.text for e in seen if isinstance(e, ev.Transcript) and e.role == "model")
        assert said.split() == ["six", "ten"]  # transcripts arrive in fragments
        assert any(isinstance(e, ev.Transcript) and e.role == "user" for e in seen)
        done = seen[-1]
        assert isinstance(done, ev.TurnComplete) and done.usage is not None
        assert done.usage.total_tokens > 0 and done.usage.by_modality
        # The emulator got exactly the audio we sent, as 16 kHz PCM blobs.
        assert emu.received_audio() == UTTERANCE
        audio_records = emu.recorder.of("audio")
        assert audio_records and all(r.mime_type == "audio/pcm;rate=16000" for r in audio_records)
        setup = emu.connections[0].setup
        assert setup is not None and setup.model.endswith(
            "gemini-2.5-flash-native-audio-preview-12-2025"
        )


async def test_three_turns_in_one_session_never_go_deaf() -> None:
    replies = [Reply(pcm=tone(500 + 110 * i, 300)) for i in range(3)]
    async with (
        Emulator(fast_scenario(replies=replies)) as emu,
        make_client(emu) as client,
    ):
        stream = client.events()
        for expected in replies:
            send_speech(client, UTTERANCE)
            assert audio_of(await next_turn(stream)) == expected.pcm
        assert len(emu.connections) == 1 and emu.connections[0].turns == 3


async def test_hold_to_talk_sends_activity_signals_around_the_audio() -> None:
    async with (
        Emulator(fast_scenario(replies=[Reply(pcm=tone(610, 200))])) as emu,
        make_client(emu, automatic_activity_detection=False) as client,
    ):
        stream = client.events()
        client.activity_start()
        send_speech(client, speech_16k())  # no trailing silence: the release ends the turn
        client.activity_end()
        seen = await next_turn(stream)
        assert audio_of(seen) == tone(610, 200)
        kinds = [
            r.kind for r in emu.records if r.kind in ("activity_start", "audio", "activity_end")
        ]
        assert kinds[0] == "activity_start" and kinds[-1] == "activity_end"
        assert set(kinds[1:-1]) == {"audio"}
        setup = emu.connections[0].setup
        assert setup is not None and setup.automatic_activity_detection is False


async def test_speaking_over_the_reply_interrupts_it() -> None:
    scenario = fast_scenario(replies=[Reply(pcm=tone(610, 4000))], realtime_factor=1.0)
    async with Emulator(scenario) as emu, make_client(emu) as client:
        stream = client.events()
        send_speech(client, UTTERANCE)
        seen: list[ev.LiveEvent] = []
        async with asyncio.timeout(20):
            async for event in stream:
                seen.append(event)
                if isinstance(event, ev.AudioChunk) and len(seen) == 3:
                    send_speech(client, UTTERANCE)  # the user talks over the reply
                if isinstance(event, ev.Interrupted):
                    break
        assert len(audio_of(seen)) < len(tone(610, 4000))
        assert emu.connections[0].interruptions == 1


async def test_typed_text_gets_a_spoken_answer() -> None:
    async with Emulator(fast_scenario()) as emu, make_client(emu) as client:
        stream = client.events()
        client.send_text("what time is it")
        seen = await next_turn(stream)
        assert audio_of(seen)
        (turn,) = emu.recorder.of("client_content")
        assert "what time is it" in str(turn.message)


async def test_tool_call_round_trip() -> None:
    reply = Reply(
        tool_call=ToolCallSpec("get_time", {"zone": "local"}, id="fc-7"),
        after_tool=Reply(pcm=tone(700, 200)),
    )
    decl = [{"name": "get_time", "description": "The local time.", "parameters": None}]
    async with (
        Emulator(fast_scenario(replies=[reply])) as emu,
        make_client(emu, function_declarations=decl) as client,
    ):
        stream = client.events()
        send_speech(client, UTTERANCE)
        async with asyncio.timeout(20):
            call = None
            async for event in stream:
                if isinstance(event, ev.ToolCall):
                    call = event
                    break
        assert call == ev.ToolCall((ev.FunctionCall("fc-7", "get_time", {"zone": "local"}),))
        client.send_tool_response([("fc-7", "get_time", {"time": "12:00"}, None)])
        assert audio_of(await next_turn(stream)) == tone(700, 200)
        (response,) = emu.recorder.of("tool_response")
        assert "12:00" in str(response.message)
        setup = emu.connections[0].setup
        assert setup is not None and setup.function_names == ("get_time",)


async def test_go_away_resumes_with_the_handle_and_loses_no_input() -> None:
    reply = tone(610, 1500)
    scenario = fast_scenario(
        default_reply=Reply(pcm=reply),
        faults=[Fault(FaultKind.GO_AWAY, connection=1, turn=1, time_left_s=2.0)],
    )
    async with Emulator(scenario) as emu, make_client(emu) as client:
        stream = client.events()
        send_speech(client, UTTERANCE)
        first = await next_turn(stream)
        assert audio_of(first) == reply  # the reply in progress was let finish
        async with asyncio.timeout(20):
            async for event in stream:
                if isinstance(event, ev.SessionResumed):
                    assert event.resumed
                    break
        send_speech(client, UTTERANCE)
        await next_turn(stream)
        assert len(emu.connections) == 2
        second = emu.connections[1]
        assert second.resumed_from is not None
        assert second.conversation is not None and second.conversation.turns == 2
        assert emu.received_audio() == UTTERANCE * 2


async def test_dropped_connection_mid_reply_reconnects_and_keeps_what_was_said() -> None:
    scenario = fast_scenario(faults=[Fault(FaultKind.DROP, connection=1, turn=1)])
    async with Emulator(scenario) as emu, make_client(emu) as client:
        stream = client.events()
        send_speech(client, UTTERANCE)
        seen: list[ev.LiveEvent] = []
        async with asyncio.timeout(20):
            async for event in stream:
                seen.append(event)
                if isinstance(event, ev.SessionLost):
                    # The user goes on talking while the client reconnects.
                    send_speech(client, UTTERANCE)
                if isinstance(event, ev.SessionResumed):
                    break
        assert any(isinstance(e, ev.SessionLost) for e in seen)
        seen = await next_turn(stream)
        assert audio_of(seen)
        assert emu.connections[1].resumed_from is not None
        # Everything sent reached the service: nothing said while reconnecting was lost.
        assert emu.received_audio() == UTTERANCE * 2
        assert client.connections == 2


async def test_internal_error_at_setup_is_retried() -> None:
    scenario = fast_scenario(faults=[Fault(FaultKind.INTERNAL, connection=1)])
    async with Emulator(scenario) as emu, make_client(emu) as client:
        stream = client.events()
        send_speech(client, UTTERANCE)
        assert audio_of(await next_turn(stream))
        assert len(emu.connections) == 2 and emu.connections[0].close_code == 1011


@pytest.mark.parametrize(
    ("kind", "code", "words"),
    [
        (FaultKind.BAD_KEY, 1007, "rejected the API key"),
        (FaultKind.UNKNOWN_MODEL, 1008, "does not serve model"),
    ],
)
async def test_fatal_errors_stop_retrying_and_say_what_to_fix(
    kind: FaultKind, code: int, words: str
) -> None:
    async with Emulator(fast_scenario(faults=[Fault(kind, once=False)])) as emu:
        client = make_client(emu, connect_attempts=5)
        with pytest.raises(LiveFatalError) as caught:
            await client.connect()
        await client.close()
        assert caught.value.code == code and words in caught.value.message
        assert len(emu.connections) == 1  # no retry


async def test_wrong_key_is_fatal_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "AIzaSy-wrong-key-that-must-not-leak-123"
    async with Emulator(fast_scenario()) as emu:
        client = make_client(emu, key=wrong)
        with pytest.raises(LiveFatalError) as caught:
            await client.connect()
        await client.close()
    assert "API key" in str(caught.value) and "/etc/appliance/gemini-api-key" in str(caught.value)
    assert wrong not in caplog.text and wrong not in str(caught.value)


async def test_unknown_model_from_config_is_fatal() -> None:
    async with Emulator(fast_scenario()) as emu:
        client = make_client(emu, config=live_config(emu, model="gemini-2.0-flash-exp"))
        with pytest.raises(LiveFatalError, match=r"gemini-2\.0-flash-exp"):
            await client.connect()
        await client.close()


async def test_missing_setup_complete_times_out_instead_of_hanging() -> None:
    scenario = fast_scenario(faults=[Fault(FaultKind.NO_SETUP_COMPLETE, once=False)])
    async with Emulator(scenario) as emu:
        cfg = live_config(emu, setup_timeout_s=0.5)
        client = make_client(emu, config=cfg, connect_attempts=2)
        with pytest.raises(LiveUnavailableError, match="no setupComplete"):
            await client.connect()
        await client.close()
        assert len(emu.connections) == 2  # a timeout is passing: it was retried


async def test_reconnect_gives_up_as_offline_when_the_service_is_gone() -> None:
    emu = Emulator(Scenario(think_ms=20, use_espeak=False))
    await emu.start()
    client = make_client(emu, reconnect_attempts=3)
    await client.connect()
    stream = client.events()
    await emu.stop()  # the service goes away; the open connection is closed
    seen: list[ev.LiveEvent] = []
    async with asyncio.timeout(20):
        seen = [event async for event in stream]
    await client.close()
    assert isinstance(seen[0], ev.SessionLost)
    assert isinstance(seen[-1], ev.Offline) and "gave up after 3 attempts" in seen[-1].reason


async def test_resumption_handle_carries_context_to_a_new_client() -> None:
    handles: list[str] = []
    async with Emulator(fast_scenario()) as emu:
        async with make_client(emu, on_resumption_handle=handles.append) as first:
            stream = first.events()
            send_speech(first, UTTERANCE)
            await next_turn(stream)
        # Read once the client is closed: the update that follows a turn's end may still be
        # on its way when TurnComplete is seen (the receive path yields between frames).
        handle = first.resumption_handle
        assert handle is not None and handle == handles[-1]
        async with make_client(emu, resumption_handle=handle) as second:
            stream = second.events()
            send_speech(second, UTTERANCE)
            await next_turn(stream)
        conv = emu.connections[1].conversation
        assert conv is not None and conv.turns == 2
        assert emu.connections[1].resumed_from == handle
