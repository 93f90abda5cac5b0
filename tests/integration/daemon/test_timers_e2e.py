"""Timers and alarms through the real daemon: the model sets one over the emulator, the
clock the test controls moves, the speaker on the JACK rig rings, the button stops it."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.audio.fakes import eventually
from appliance.daemon.state import Ask
from appliance.live.emulator import Emulator, Reply, ToolCallSpec
from appliance.timers.fakes import ManualClock
from appliance.timers.ringer import PATTERN
from tests.rig.appliance import call, control, dominant_hz, played_blocks, running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(120)]

BUTTON, LED = 17, 25
SECTIONS = {"button": {"pin": BUTTON}, "leds": {"driver": "led", "pin": LED}}
RING_HZ = PATTERN[0][0]


def noon() -> ManualClock:
    berlin = "Europe/Berlin"
    return ManualClock(dt.datetime(2026, 11, 30, 12, 0, tzinfo=ZoneInfo(berlin)), berlin)


def set_pasta_timer(emu: Emulator) -> None:
    emu.scenario.default_reply = Reply(
        text="Setting it.",
        pcm=tone(610, 300),
        tool_call=ToolCallSpec("set_timer", {"minutes": 10, "label": "pasta"}),
        after_tool=Reply(text="Ten minutes for the pasta.", pcm=tone(610, 300)),
    )


async def test_the_model_sets_a_timer_that_rings_and_a_press_stops_it(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    clock = noon()
    set_pasta_timer(emu)
    async with running_appliance(jack_audio, emu, tmp_path, clock=clock, **SECTIONS) as r:
        await call(lambda: list(control(r).ask("set a timer for ten minutes for the pasta")))
        await r.wait_state("idle", after=1)
        (response,) = emu.recorder.of("tool_response")
        assert "2026-11-30T12:10:00+01:00" in str(response.message)  # the model heard when
        assert "set_timer" in emu.connections[0].setup.function_names  # type: ignore[union-attr]
        listed = await call(control(r).timers)
        assert [(t["label"], t["rings_at"]) for t in listed] == [
            ("pasta", "2026-11-30T12:10:00+01:00")
        ]

        jack_audio.rig.start_recording()
        clock.advance(599)
        await asyncio.sleep(0.5)
        assert r.app.machine.state == "idle" and len(jack_audio.rig.sound_frames()) == 0
        clock.advance(1)
        ringing = await r.wait_state("ringing")
        assert r.app.leds is not None and r.app.leds.state == "ringing"
        await asyncio.sleep(2.0)  # more than one pattern
        rang = played_blocks(jack_audio)
        assert len(rang) * 480 / 48_000 > 0.5
        assert dominant_hz(rang) == pytest.approx(RING_HZ, abs=15)

        pins.pin(BUTTON).drive_low()  # the press silences it and starts nothing
        await asyncio.sleep(0.05)
        pins.pin(BUTTON).drive_high()
        await r.wait_state("idle", after=ringing)
        await asyncio.sleep(0.3)
        jack_audio.rig.stop_recording()
        jack_audio.rig.start_recording()
        await asyncio.sleep(1.0)
        assert len(jack_audio.rig.sound_frames()) == 0  # silent after the press
        assert r.app.machine.state == "idle" and len(emu.connections) == 1
        assert await call(control(r).timers) == []


async def test_a_timer_set_before_a_restart_rings_after_it_and_two_ring_at_once(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    clock = noon()
    set_pasta_timer(emu)
    async with running_appliance(jack_audio, emu, tmp_path, clock=clock, **SECTIONS) as r:
        await call(lambda: list(control(r).ask("a timer for the pasta")))
        await r.wait_state("idle", after=1)
        assert r.app.timers is not None
        r.app.timers.add_timer(600, "eggs")  # a second one, due at the same time
    clock.advance(300)  # the service is down for five minutes
    async with running_appliance(
        jack_audio, emu, tmp_path, clock=clock, timers={"ring_max_s": 2}, **SECTIONS
    ) as r:
        assert [t["label"] for t in await call(control(r).timers)] == ["pasta", "eggs"]
        clock.advance(300)
        ringing = await r.wait_state("ringing")
        # Both are due; nobody answers: it stops by itself after ring_max_s.
        await r.wait_state("idle", after=ringing, within_s=10)
        assert r.app.machine.state == "idle"
        assert await call(control(r).timers) == []


async def test_in_a_conversation_the_model_is_told_instead_of_a_ring(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    clock = noon()
    emu.scenario.default_reply = Reply(text="Sure.", pcm=tone(610, 3000))
    async with running_appliance(jack_audio, emu, tmp_path, clock=clock, **SECTIONS) as r:
        assert r.app.timers is not None
        entry = r.app.timers.add_timer(60, "tea")
        r.app.post(Ask("tell me something long"))
        await r.wait_state("speaking")
        clock.advance(60)
        await eventually(lambda: len(emu.recorder.of("client_content")) == 2, within_s=10)
        told = str(emu.recorder.of("client_content")[1].message)
        assert "timer 'tea' (1 min) is due" in told
        assert "ringing" not in r.states
        assert [t["id"] for t in await call(control(r).timers)] == []  # rung: booked out
        assert entry.id not in r.app.timers.book.entries


async def test_appliance_timer_cancel_over_the_control_socket(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    clock = noon()
    async with running_appliance(jack_audio, emu, tmp_path, clock=clock, **SECTIONS) as r:
        assert r.app.timers is not None
        entry = r.app.timers.add_alarm("07:00", "work", [0, 1, 2, 3, 4])
        assert (await call(control(r).timers))[0]["rings_at"] == "2026-12-01T07:00:00+01:00"
        cancelled = await call(control(r).cancel_timer, entry.id)
        assert "alarm 'work' at 07:00 (weekdays)" in cancelled
        assert await call(control(r).timers) == []
        clock.advance(24 * 3600)
        await asyncio.sleep(0.5)
        assert "ringing" not in r.states
