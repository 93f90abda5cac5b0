"""Every emulated fault, seen through the real SDK as it would see the real service's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.genai import errors, types

from appliance.live.emulator import Emulator, Fault, FaultKind, Reply
from tests.rig.emulator import Turn, absorb, collect_turn, tone

pytestmark = pytest.mark.timeout(60)

MODEL = "gemini-3.1-flash-live-preview"
TEXT = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
AUDIO = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])


async def ask(session: Any, text: str = "hello") -> Turn:
    await session.send_realtime_input(text=text)
    return await asyncio.wait_for(collect_turn(session), 20)


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        (FaultKind.BAD_KEY, 1007, "API key not valid. Please pass a valid API key."),
        (FaultKind.UNKNOWN_MODEL, 1008, "is not found for API version v1"),
        (FaultKind.INTERNAL, 1011, "Internal error encountered."),
        (FaultKind.DROP, 1006, ""),
    ],
)
async def test_setup_faults_raise_api_error(
    emu: Emulator, client: Any, kind: FaultKind, code: int, reason: str
) -> None:
    emu.scenario.faults.append(Fault(kind, connection=1))
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=MODEL, config=TEXT):
            pass
    assert info.value.code == code
    assert reason in str(info.value)
    # The fault fired once: the next connection works.
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        assert (await ask(session)).turn_complete


async def test_shut_down_model_is_rejected_1008(emu: Emulator, client: Any) -> None:
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model="gemini-2.0-flash-exp", config=TEXT):
            pass
    assert info.value.code == 1008
    assert "models/gemini-2.0-flash-exp is not found" in str(info.value)


async def test_allowed_models_are_configurable(emu: Emulator, client: Any) -> None:
    emu.scenario.models = ("gemini-2.0-flash-exp",)
    async with client.aio.live.connect(model="gemini-2.0-flash-exp", config=TEXT) as session:
        assert (await ask(session)).turn_complete
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model=MODEL, config=TEXT):
            pass
    assert info.value.code == 1008


@pytest.mark.parametrize(("kind", "code"), [(FaultKind.INTERNAL, 1011), (FaultKind.DROP, 1006)])
async def test_mid_reply_faults_on_nth_turn(
    emu: Emulator, client: Any, kind: FaultKind, code: int
) -> None:
    reply = tone(610, 800)
    emu.scenario.default_reply = Reply(pcm=reply)
    emu.scenario.faults.append(Fault(kind, connection=1, turn=2))
    turn = Turn()
    async with client.aio.live.connect(model=MODEL, config=AUDIO) as session:
        assert (await ask(session, "one")).audio == reply
        await session.send_realtime_input(text="two")
        with pytest.raises(errors.APIError) as info:
            async for msg in session.receive():
                absorb(turn, msg)
    assert info.value.code == code
    assert 0 < len(turn.audio) < len(reply)  # cut mid-reply
    assert not turn.turn_complete


async def test_go_away_then_close(emu: Emulator, client: Any) -> None:
    emu.scenario.faults.append(Fault(FaultKind.GO_AWAY, connection=1, time_left_s=0.3))
    turn = Turn()
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        with pytest.raises(errors.APIError) as info:
            async for msg in session.receive():
                absorb(turn, msg)
    assert turn.go_away is not None and turn.go_away.time_left == "0.3s"
    assert info.value.code == emu.scenario.go_away_close_code == 1011


async def test_never_setup_complete_leaves_connect_waiting(emu: Emulator, client: Any) -> None:
    emu.scenario.faults.append(Fault(FaultKind.NO_SETUP_COMPLETE, connection=1))

    async def connect() -> None:
        async with client.aio.live.connect(model=MODEL, config=TEXT):
            pass

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connect(), 1.0)
    assert emu.records[0].kind == "setup"
    assert [s.kind for s in emu.sent] == []


async def test_malformed_frame_fails_the_sdk_parse(emu: Emulator, client: Any) -> None:
    emu.scenario.faults.append(Fault(FaultKind.MALFORMED, connection=1))
    with pytest.raises(ValueError, match="Failed to parse response"):
        async with client.aio.live.connect(model=MODEL, config=TEXT):
            pass


async def test_unknown_message_on_a_turn_crashes_the_sdk(emu: Emulator, client: Any) -> None:
    # A frame with no known top-level key: the SDK 3.6.1 fails with TypeError (see notes).
    emu.scenario.faults.append(Fault(FaultKind.UNKNOWN_MESSAGE, connection=1, turn=1))
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        await session.send_realtime_input(text="hi")
        with pytest.raises(TypeError):
            await asyncio.wait_for(collect_turn(session), 20)


async def test_fault_targets_the_nth_connection(emu: Emulator, client: Any) -> None:
    emu.scenario.faults.append(Fault(FaultKind.INTERNAL, connection=2))
    outcomes: list[str | int] = []
    for _ in range(3):
        try:
            async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
                await ask(session)
                outcomes.append("ok")
        except errors.APIError as exc:
            outcomes.append(exc.code)
    assert outcomes == ["ok", 1011, "ok"]
    assert [c.close_code for c in emu.connections][1] == 1011
