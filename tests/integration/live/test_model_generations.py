"""The emulator behaves like the model it claims to be, through the real SDK: 3.8 closes
on what it rejects and runs calls asynchronously with `scheduling`; the 2.5 native-audio
preview keeps the old rules. And the appliance's client copes with both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.genai import types

from appliance.live import events as ev
from appliance.live.emulator import Emulator, Fault, FaultKind, Reply, ToolCallSpec
from appliance.live.models import DEFAULT_MODEL
from tests.integration.live.test_live_client import (
    UTTERANCE,
    audio_of,
    fast_scenario,
    live_config,
    make_client,
    next_turn,
    send_speech,
)
from tests.rig.emulator import client_for, tone

pytestmark = pytest.mark.timeout(60)

PREVIEW = "gemini-2.5-flash-native-audio-preview-12-2025"


async def setup_close(emu: Emulator, model: str, **config: Any) -> tuple[int | None, str]:
    """Connect with the raw SDK and `config`; the close code and reason the setup got
    (None, "" when it was taken)."""
    client = client_for(emu.base_url, emu.ca_file, emu.api_key)
    try:
        async with client.aio.live.connect(
            model=model, config=types.LiveConnectConfig(response_modalities=["AUDIO"], **config)
        ) as session:
            await session.send_realtime_input(audio_stream_end=True)
            async with asyncio.timeout(5):
                async for _ in session.receive():
                    pass
    except Exception as exc:  # the SDK's APIError carries the close code
        return getattr(exc, "code", None), str(exc)
    return None, ""


@pytest.mark.parametrize(
    ("field", "config"),
    [
        ("thinking_config", {"thinking_config": types.ThinkingConfig(thinking_budget=512)}),
        ("enable_affective_dialog", {"enable_affective_dialog": True}),
        (
            "proactive_audio",
            {"proactivity": types.ProactivityConfig(proactive_audio=False)},
        ),
    ],
)
async def test_3_8_closes_on_what_it_rejects_and_the_preview_takes_it(
    field: str, config: dict[str, Any]
) -> None:
    async with Emulator(fast_scenario()) as emu:
        code, reason = await setup_close(emu, DEFAULT_MODEL, **config)
        assert code == 1007 and field in reason and DEFAULT_MODEL in reason
        code, _ = await setup_close(emu, PREVIEW, **config)
        assert code is None
        assert emu.connections[-1].setup is not None  # the preview took the setup


DECL = [{"name": "lights", "description": "Switch the lights.", "behavior": "NON_BLOCKING"}]
MEANWHILE = tone(610, 600)
AFTER = tone(870, 200)


async def call_and_answer(
    model: str, scheduling: str | None, declarations: list[dict[str, Any]] = DECL
) -> tuple[Emulator, list[list[ev.LiveEvent]]]:
    """The user speaks; the model calls `lights`, the client answers with `scheduling`;
    the turns the client sees after the call, until the emulator goes quiet."""
    reply = Reply(
        pcm=MEANWHILE,
        tool_call=ToolCallSpec("lights", {"on": False}, id="fc-1"),
        after_tool=Reply(pcm=AFTER),
    )
    emu = Emulator(fast_scenario(replies=[reply], realtime_factor=2.0))
    async with (
        emu,
        make_client(
            emu, config=live_config(emu, model=model), function_declarations=declarations
        ) as client,
    ):
        stream = client.events()
        send_speech(client, UTTERANCE)
        async with asyncio.timeout(20):
            async for event in stream:
                if isinstance(event, ev.ToolCall):
                    break
        client.send_tool_response([("fc-1", "lights", {"result": "off"}, scheduling)])
        turns = []
        while True:
            try:
                async with asyncio.timeout(2.5):
                    turns.append(await next_turn(stream))
            except TimeoutError:
                break
    return emu, turns


async def test_3_8_talks_on_while_a_non_blocking_call_runs_and_says_the_answer_when_idle() -> None:
    emu, turns = await call_and_answer(DEFAULT_MODEL, "WHEN_IDLE")
    assert [audio_of(t) for t in turns] == [MEANWHILE, AFTER]
    assert emu.connections[0].tool_schedulings == ["WHEN_IDLE"]


async def test_3_8_keeps_a_silent_answer_to_itself() -> None:
    emu, turns = await call_and_answer(DEFAULT_MODEL, "SILENT")
    assert [audio_of(t) for t in turns] == [MEANWHILE]
    assert emu.connections[0].tool_schedulings == ["SILENT"]
    (response,) = emu.recorder.of("tool_response")
    assert "SILENT" in str(response.message)


async def test_3_8_cuts_itself_short_for_an_interrupting_answer() -> None:
    emu, turns = await call_and_answer(DEFAULT_MODEL, "INTERRUPT")
    heard = [audio_of(t) for t in turns]
    assert heard[-1] == AFTER and len(heard[0]) < len(MEANWHILE)
    assert emu.connections[0].tool_schedulings == ["INTERRUPT"]


async def test_3_8_waits_for_a_call_declared_blocking() -> None:
    blocking = [{**DECL[0], "behavior": "BLOCKING"}]
    emu, turns = await call_and_answer(DEFAULT_MODEL, None, blocking)
    assert [audio_of(t) for t in turns] == [AFTER]  # nothing said before the answer
    assert emu.connections[0].tool_schedulings == []


async def test_the_preview_model_keeps_blocking_calls_and_gets_no_behavior() -> None:
    emu, turns = await call_and_answer(PREVIEW, None)
    assert [audio_of(t) for t in turns] == [AFTER]
    setup = emu.connections[0].setup
    assert setup is not None and "behavior" not in str(setup.raw.get("tools"))


async def test_a_model_that_waits_for_input_after_a_tool_response_does_not_stall_us() -> None:
    reply = Reply(
        tool_call=ToolCallSpec("lights", {"on": True}, id="fc-2"), after_tool=Reply(pcm=AFTER)
    )
    stall = Fault(FaultKind.STALL_AFTER_TOOL_RESPONSE, connection=1, turn=1)
    blocking = [{**DECL[0], "behavior": "BLOCKING"}]
    emu = Emulator(fast_scenario(replies=[reply], faults=[stall]))
    async with emu, make_client(emu, function_declarations=blocking) as client:
        stream = client.events()
        send_speech(client, UTTERANCE)
        async with asyncio.timeout(20):
            async for event in stream:
                if isinstance(event, ev.ToolCall):
                    break
        # The microphone is paused (nothing else is sent): the client must nudge.
        client.send_tool_response([("fc-2", "lights", {"result": "on"}, None)])
        assert audio_of(await next_turn(stream)) == AFTER
