"""The Live model as the daemon meets it: a retired one is named with the key to change,
on the LEDs, in `appliance status` and in the journal; answers to calls nobody waits for
any more are dropped."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.audio.fakes import eventually
from appliance.daemon.state import Ask, Press, Stop
from appliance.live.emulator import Emulator, Reply, ToolCallSpec
from appliance.tools import base as tools
from appliance.tools import builtin
from tests.rig.appliance import running_appliance, speech_48k
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120)]

RETIRED = "gemini-2.0-flash-live-001"


async def test_a_retired_model_is_named_with_the_key_to_change(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    pins: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.scenario.models = ("gemini-3.8-live*",)  # the service no longer serves it
    sections = {"live": {"model": RETIRED}, "leds": {"driver": "led", "pin": 25}}
    async with running_appliance(jack_audio, emu, tmp_path, **sections) as r:
        r.app.post(Press())
        await r.wait_state("error")
        status = r.app.status()
        assert r.app.leds is not None and r.app.leds.state == "error"
        await asyncio.sleep(1.0)
        assert len(emu.connections) == 1  # it does not retry a model that is gone
    error = status["last_error"]
    assert RETIRED in error and "[live] model" in error and "retired" in error
    assert "gemini-3.8-live" in error
    assert RETIRED in caplog.text


@pytest.fixture
def slow_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`get_local_time` takes a second (a slow home-control call stands in for it)."""
    original = builtin.TOOLS["get_local_time"]

    async def slow(ctx: tools.ToolContext, args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return await original.handler(ctx, args)

    monkeypatch.setitem(builtin.TOOLS, "get_local_time", replace(original, handler=slow))


@pytest.mark.usefixtures("slow_time")
async def test_an_answer_after_the_conversation_ended_is_dropped(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    emu.scenario.default_reply = Reply(
        text="Let me check.", pcm=tone(610, 300), tool_call=ToolCallSpec("get_local_time")
    )
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Ask("what time is it"))
        await eventually(lambda: bool(r.app.session.tool_tasks), within_s=10)
        r.app.post(Stop())  # the user ends it while the call runs
        await r.wait_state("idle", after=1)
        await asyncio.sleep(1.5)
    assert emu.recorder.of("tool_response") == []


@pytest.mark.usefixtures("slow_time")
async def test_an_answer_to_a_call_the_service_cancelled_is_dropped(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    # The model calls (blocking: it waits), the user talks: the service cancels the call.
    emu.scenario.replies = [Reply(tool_call=ToolCallSpec("get_local_time"))]
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        r.app.post(Press())
        await r.wait_state("listening")
        jack_audio.rig.play(speech_48k(0.2))
        await eventually(lambda: bool(r.app.session.tool_tasks), within_s=10)
        jack_audio.rig.play(speech_48k(0.2))  # talks again while the call runs
        await eventually(lambda: not r.app.session.tool_tasks, within_s=10)
        await asyncio.sleep(1.5)
    sent = [s.kind for s in emu.recorder.sent]
    assert any("toolCallCancellation" in kind for kind in sent)
    assert emu.recorder.of("tool_response") == []
