"""Lossless reconnects with transparent session resumption, through the real SDK.

The emulator numbers the client messages of each connection (setup 0, then 1, 2, ...),
reports the last one it consumed as `lastConsumedClientMessageIndex` in its resumption
updates, and records, per conversation, which messages of which connection its state is
made of (`Emulator.consumed_records`). After a drop or a goAway that stream must hold
every audio byte, text and tool response the client sent exactly once, in order, and
the client must have resent exactly the messages after the index it resumed at.

google-genai 3.6.1 refuses to send `transparent` in Gemini Developer API mode (a
ValueError before anything goes on the wire; only its Vertex AI converter passes it).
The `transparent_sdk` fixture lets the Developer API converter pass it through too, as
a newer SDK may; everything else is the SDK as installed. Without it the client falls
back to the old rule (the last test).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from google.genai import _live_converters, types

from appliance.live import events as ev
from appliance.live.client import COALESCE_AUDIO_BYTES, LiveClient
from appliance.live.emulator import Emulator, Fault, FaultKind, Record, Reply, ToolCallSpec
from appliance.live.emulator.vad import EnergyDetector, Vad
from tests.integration.live.test_live_client import (
    UTTERANCE,
    audio_of,
    fast_scenario,
    make_client,
    next_turn,
)
from tests.rig.emulator import client_for, tone

pytestmark = pytest.mark.timeout(60)

MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
CHUNK = COALESCE_AUDIO_BYTES
"""100 ms: audio sent in chunks this big goes out one chunk a message (never joined)."""


@pytest.fixture
def transparent_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let google-genai's Developer API converter send `sessionResumption.transparent`."""

    def to_mldev(from_object: Any, parent_object: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("handle", "transparent"):
            value = _live_converters.getv(from_object, [key])
            if value is not None:
                out[key] = value
        return out

    monkeypatch.setattr(_live_converters, "_SessionResumptionConfig_to_mldev", to_mldev)


def chunks(pcm: bytes) -> Iterator[bytes]:
    return (pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK))


def quiet(ms: int, seed: int) -> bytes:
    """Low noise (below the activity detector's threshold), different in every byte run:
    a duplicated or missing chunk shows in a byte comparison."""
    rnd = random.Random(seed)
    n = 16 * ms
    return b"".join(rnd.randrange(-200, 200).to_bytes(2, "little", signed=True) for _ in range(n))


def spy_audio(client: LiveClient, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every piece of audio the client is given to send (its own nudges included)."""
    given: list[bytes] = []
    send = client.send_audio

    def spy(pcm: bytes) -> None:
        given.append(pcm)
        send(pcm)

    monkeypatch.setattr(client, "send_audio", spy)
    return given


def lineage(emu: Emulator) -> list[Record]:
    """The client messages the final conversation state is made of, in order."""
    conversation = emu.connections[-1].conversation
    assert conversation is not None
    return emu.consumed_records(conversation)


def audio_in(records: list[Record]) -> bytes:
    return b"".join(r.data or b"" for r in records if r.kind == "audio")


def texts_in(records: list[Record]) -> list[str]:
    return [
        turn["parts"][0]["text"]
        for r in records
        if r.kind == "client_content"
        for turn in r.message["client_content"]["turns"]
    ]


async def closed(info: Any) -> int | None:
    """The close code of a connection, once it is closed (the client closes the one it
    left after goAway in the background)."""
    async with asyncio.timeout(5):
        while info.close_code is None:
            await asyncio.sleep(0.01)
    return int(info.close_code)


def heard_seconds(pcm: bytes) -> float:
    """What the activity detector makes of `pcm` fed in one go, without any reconnect."""
    vad = EnergyDetector()
    for piece in chunks(pcm):
        if Vad.SPEECH_END in vad.feed(piece):
            return vad.speech_ms / 1000
    raise AssertionError("no end of speech")


def assert_resent_exactly_the_tail(emu: Emulator, client: LiveClient, received: bool) -> None:
    """Connection 2 resumed at (1, L): the client resent its connection-1 messages after L,
    no more, no less, and those the service had received are the same bytes.

    `received`: the old connection was closed in order, so the service received all
    the client sent on it (after a drop the client may have sent more than arrived)."""
    first, second = emu.connections[0], emu.connections[1]
    assert second.resumed_at is not None and second.resumed_at[0] == 1
    index = second.resumed_at[1]
    assert client.resent_messages == client.messages_sent[0] - index > 0
    if received:
        assert first.received == client.messages_sent[0]
    tail = [r for r in emu.records if r.conn == 1 and r.index is not None and r.index > index]
    resent = [r for r in emu.records if r.conn == 2 and r.index][: client.resent_messages]
    assert len(tail) <= len(resent)
    assert [(r.kind, r.data, r.message) for r in tail] == [
        (r.kind, r.data, r.message) for r in resent[: len(tail)]
    ]


async def turn_saying(stream: Any, words: str) -> list[ev.LiveEvent]:
    """Events up to the TurnComplete of the reply that mentions `words`."""
    seen: list[ev.LiveEvent] = []
    while True:
        turn = await next_turn(stream)
        seen.extend(turn)
        said = "".join(e.text for e in turn if isinstance(e, ev.Transcript) and e.role == "model")
        if words in said or isinstance(turn[-1], ev.FatalError | ev.Offline):
            return seen


# -- the wire ---------------------------------------------------------------------------


async def test_updates_carry_the_index_counted_per_connection(transparent_sdk: None) -> None:
    scenario = fast_scenario(update_every_messages=2)
    async with Emulator(scenario) as emu:
        client = client_for(emu.base_url, emu.ca_file, emu.api_key)
        config = types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            session_resumption=types.SessionResumptionConfig(transparent=True),
        )
        updates: list[types.LiveServerSessionResumptionUpdate] = []

        async def take_updates(session: Any, count: int) -> None:
            async for message in session.receive():
                if message.session_resumption_update is not None:
                    updates.append(message.session_resumption_update)
                    if len(updates) == count:
                        return

        async with client.aio.live.connect(model=MODEL, config=config) as session:
            for i in range(5):
                await session.send_realtime_input(
                    audio=types.Blob(data=quiet(100, i), mime_type="audio/pcm;rate=16000")
                )
            await asyncio.wait_for(take_updates(session, 3), 10)
        assert [u.last_consumed_client_message_index for u in updates] == [0, 2, 4]
        sent = [s for s in emu.sent if s.kind == "sessionResumptionUpdate"]
        assert len(sent) >= 3
        handle = updates[-1].new_handle
        config.session_resumption = types.SessionResumptionConfig(handle=handle, transparent=True)
        updates.clear()
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await session.send_realtime_input(
                audio=types.Blob(data=quiet(100, 9), mime_type="audio/pcm;rate=16000")
            )
            await session.send_realtime_input(audio_stream_end=True)
            await asyncio.wait_for(take_updates(session, 2), 10)
        # A resumed connection counts from 0 again; the emulator knows where it resumed.
        assert [u.last_consumed_client_message_index for u in updates] == [0, 2]
        assert emu.connections[1].resumed_at == (1, 4)
        assert emu.connections[0].setup is not None and emu.connections[0].setup.transparent
        assert audio_in(lineage(emu)) == b"".join(quiet(100, i) for i in (0, 1, 2, 3, 9))


async def test_without_transparent_updates_carry_no_index_and_none_come_between_turns(
    transparent_sdk: None,
) -> None:
    async with Emulator(fast_scenario(update_every_messages=2)) as emu:
        client = client_for(emu.base_url, emu.ca_file, emu.api_key)
        config = types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],
            session_resumption=types.SessionResumptionConfig(),
        )
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            for i in range(5):
                await session.send_realtime_input(
                    audio=types.Blob(data=quiet(100, i), mime_type="audio/pcm;rate=16000")
                )
            async for message in session.receive():
                update = message.session_resumption_update
                assert update is not None and update.last_consumed_client_message_index is None
                break
            await asyncio.sleep(0.2)
        assert [s.kind for s in emu.sent].count("sessionResumptionUpdate") == 1
        assert emu.connections[0].reported == []


# -- the client -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.INTERNAL])
async def test_a_drop_mid_utterance_resends_exactly_the_unconsumed_tail(
    transparent_sdk: None, monkeypatch: pytest.MonkeyPatch, kind: FaultKind
) -> None:
    # Messages: the text "hello" (1), the utterance in 100 ms chunks (2..22), the text
    # "goodbye" (23). Updates come after each turn and every 10 messages; the connection
    # ends on message 15, before consuming it: the tail is the messages after the last
    # update, some received and unconsumed, the rest never received.
    scenario = fast_scenario(faults=[Fault(kind, connection=1, at_message=15)])
    async with Emulator(scenario) as emu, make_client(emu) as client:
        given = spy_audio(client, monkeypatch)
        stream = client.events()
        assert client.transparent
        client.send_text("hello")
        await turn_saying(stream, "hello")
        for piece in chunks(UTTERANCE):
            client.send_audio(piece)
        client.send_text("goodbye")
        seen = await turn_saying(stream, "goodbye")
        assert any(isinstance(e, ev.SessionLost) for e in seen)
        assert client.connections == 2 and emu.connections[0].close_code in (1006, 1011)
        assert emu.connections[0].received >= 15 and emu.connections[0].consumed == 14
        consumed = lineage(emu)
        assert audio_in(consumed) == b"".join(given) == UTTERANCE  # each byte once, in order
        assert texts_in(consumed) == ["hello", "goodbye"]
        assert [r.index for r in consumed if r.conn == 1] == list(
            range(1, emu.connections[1].resumed_at[1] + 1)  # type: ignore[index]
        )
        assert_resent_exactly_the_tail(emu, client, received=False)
        assert emu.connections[1].resumed_at[1] > 1  # type: ignore[index]
        # The utterance the drop cut in two was heard as one: the resumed session went on
        # with the activity detector's state at the handle.
        conversation = emu.connections[1].conversation
        assert conversation is not None
        heard = [e.text for e in conversation.transcript if e.role == "user"]
        assert heard == ["hello", f"({heard_seconds(UTTERANCE):.1f} s of speech)", "goodbye"]


async def test_go_away_mid_stream_moves_before_the_cut_and_loses_nothing(
    transparent_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = Reply(
        tool_call=ToolCallSpec("get_time", {}, id="fc-1"),
        after_tool=Reply(pcm=tone(700, 200), text="noon"),
    )
    decl = [{"name": "get_time", "description": "The local time.", "parameters": None}]
    go_away = Fault(FaultKind.GO_AWAY, connection=1, at_message=16, time_left_s=5.0)
    scenario = fast_scenario(replies=[reply], faults=[go_away])
    async with (
        Emulator(scenario) as emu,
        make_client(emu, function_declarations=decl) as client,
    ):
        given = spy_audio(client, monkeypatch)
        stream = client.events()
        client.send_text("what time is it")
        async with asyncio.timeout(20):
            async for event in stream:
                if isinstance(event, ev.ToolCall):
                    break
        client.send_tool_response([("fc-1", "get_time", {"time": "12:00"}, None)])
        await turn_saying(stream, "noon")
        for piece in chunks(UTTERANCE):  # the microphone, paced: goAway comes mid-stream
            client.send_audio(piece)
            await asyncio.sleep(0.01)
        seen = await next_turn(stream)
        assert not any(isinstance(e, ev.SessionLost) for e in seen)
        assert ev.SessionResumed(resumed=True) in seen
        first, second = emu.connections[0], emu.connections[1]
        assert await closed(first) == 1000  # we closed it, before the emulator's 1011 cut
        assert second.turns == 1 and first.turns == 1
        consumed = lineage(emu)
        assert audio_in(consumed) == b"".join(given)  # the tool's nudge (if any) + utterance
        assert texts_in(consumed) == ["what time is it"]
        (response,) = [r for r in consumed if r.kind == "tool_response"]
        assert "12:00" in str(response.message)
        assert_resent_exactly_the_tail(emu, client, received=True)


async def test_go_away_during_a_reply_lets_it_finish_and_resumes_after_it(
    transparent_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reply plays in real time (1.5 s); the microphone goes on sending (quiet) audio
    # meanwhile, and goAway comes while the reply plays.
    reply = tone(610, 1500)
    go_away = Fault(FaultKind.GO_AWAY, connection=1, at_message=26, time_left_s=5.0)
    scenario = fast_scenario(default_reply=Reply(pcm=reply), faults=[go_away], realtime_factor=1.0)
    async with Emulator(scenario) as emu, make_client(emu) as client:
        given = spy_audio(client, monkeypatch)
        stream = client.events()
        for piece in chunks(UTTERANCE):
            client.send_audio(piece)
        seen: list[ev.LiveEvent] = []
        async with asyncio.timeout(20):
            async for event in stream:
                seen.append(event)
                if isinstance(event, ev.AudioChunk) and len(audio_of(seen)) == len(
                    event.pcm
                ):  # the reply started: keep the microphone going
                    for i in range(12):
                        client.send_audio(quiet(100, i))
                if isinstance(event, ev.SessionResumed):
                    break
        assert audio_of(seen) == reply  # whole: the switch waited for the end
        assert any(isinstance(e, ev.TurnComplete) for e in seen)
        first, second = emu.connections[0], emu.connections[1]
        assert await closed(first) == 1000
        # Resumed with the handle sent after the turn: the turn is not asked again.
        assert second.resumed_at == (1, first.reported[-1])
        await asyncio.sleep(0.3)
        assert second.turns == 0 and first.turns == 1
        assert audio_in(lineage(emu)) == b"".join(given)
        if client.resent_messages:  # quiet audio sent after that handle
            assert_resent_exactly_the_tail(emu, client, received=True)


async def test_go_away_during_a_long_reply_moves_before_the_time_is_up(
    transparent_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = tone(610, 4000)
    go_away = Fault(FaultKind.GO_AWAY, connection=1, at_message=24, time_left_s=1.0)
    scenario = fast_scenario(default_reply=Reply(pcm=reply), faults=[go_away], realtime_factor=1.0)
    async with Emulator(scenario) as emu, make_client(emu) as client:
        given = spy_audio(client, monkeypatch)
        stream = client.events()
        for piece in chunks(UTTERANCE):
            client.send_audio(piece)
        started = False
        async with asyncio.timeout(20):
            async for event in stream:
                if isinstance(event, ev.AudioChunk) and not started:
                    started = True
                    for i in range(6):
                        client.send_audio(quiet(100, i))
                if isinstance(event, ev.SessionResumed):
                    break
        go_away_at = next(s.t_ns for s in emu.sent if s.kind == "goAway")
        (setup,) = [r for r in emu.records if r.conn == 2 and r.kind == "setup"]
        assert 0 < setup.t_ns - go_away_at < 0.9e9  # within the time left minus the margin
        assert await closed(emu.connections[0]) == 1000  # not the emulator's cut
        await asyncio.sleep(0.3)
        assert audio_in(lineage(emu)) == b"".join(given)


async def test_the_sdk_as_installed_refuses_transparent_and_the_client_falls_back() -> None:
    async with Emulator(fast_scenario()) as emu:
        raw = client_for(emu.base_url, emu.ca_file, emu.api_key)
        config = types.LiveConnectConfig(
            session_resumption=types.SessionResumptionConfig(transparent=True)
        )
        with pytest.raises(ValueError, match="transparent"):
            async with raw.aio.live.connect(model=MODEL, config=config):
                pass
        async with make_client(emu) as client:
            stream = client.events()
            client.send_text("hello")
            assert audio_of(await next_turn(stream))
            assert not client.transparent
        setup = emu.connections[0].setup
        assert setup is not None and setup.session_resumption and not setup.transparent
        assert emu.connections[0].reported == []
