"""Every way the Live service misbehaves, one row each, through the real daemon on the
JACK rig and the emulator's fault modes (issue 13, "keep them fixed").

Each row asks once (a typed turn) with the fault armed, waits until the daemon settles,
and checks: the daemon is up (`status` answers over the control socket); a passing fault
leaves the next ask working, a fatal one leaves `error` with a message that says what to
fix and no retry behind the user's back; and the journal says what happened once, not
in a flood (the records about it are counted).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.daemon.state import Ask
from appliance.live.emulator import Emulator, Fault, FaultKind, Reply, ToolCallSpec
from tests.rig.appliance import Running, call, control, running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio

pytestmark = [pytest.mark.jack, pytest.mark.timeout(60), pytest.mark.usefixtures("pins")]

SETTLED = frozenset({"idle", "error", "offline"})
ANSWER = Reply(text="ok", pcm=tone(610, 300))
TOOL_THEN_ANSWER = Reply(tool_call=ToolCallSpec("get_local_time"), after_tool=ANSWER)
FAST = {
    "behaviour": {"reply_timeout_s": 2.0, "conversation_timeout_s": 1.5},
    "live": {"setup_timeout_s": 2},
}


@dataclass(frozen=True)
class Row:
    """One fault: how to arm it, and what the daemon must do about it."""

    faults: tuple[Fault, ...] = ()
    said: str | None = None
    """Text that must appear in exactly one log record (None: nothing above INFO)."""
    fatal: str | None = None
    """For a fatal fault: text the `error` state's message must contain."""
    answered: bool = False
    """The faulty turn itself still gets its answer (a retry or a switch hid the fault)."""
    reply: Reply = ANSWER
    output_mime: str | None = None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def at_setup(kind: FaultKind, **kw: object) -> tuple[Fault, ...]:
    return (Fault(kind, connection=1, **kw),)  # type: ignore[arg-type]


def at_turn(kind: FaultKind, **kw: object) -> tuple[Fault, ...]:
    return (Fault(kind, connection=1, turn=1, **kw),)  # type: ignore[arg-type]


ROWS: dict[str, Row] = {
    "bad key": Row(at_setup(FaultKind.BAD_KEY), said="rejected the API key", fatal="API key"),
    "unknown model": Row(
        at_setup(FaultKind.UNKNOWN_MODEL), said="does not serve model", fatal="[live] model"
    ),
    "internal close after setup": Row(
        at_setup(FaultKind.INTERNAL), said="1011: Internal error", answered=True
    ),
    "internal close mid-reply": Row(at_turn(FaultKind.INTERNAL), said="1011: Internal error"),
    "TCP drop mid-reply": Row(at_turn(FaultKind.DROP), said="1006"),
    "goAway mid-reply": Row(
        at_turn(FaultKind.GO_AWAY, time_left_s=1.5), said="(goAway, time left", answered=True
    ),
    "goAway after setup": Row(
        at_setup(FaultKind.GO_AWAY, time_left_s=1.5),
        said="(goAway, time left",
        answered=True,
    ),
    "no setupComplete": Row(
        at_setup(FaultKind.NO_SETUP_COMPLETE), said="no setupComplete", answered=True
    ),
    "malformed frame at setup": Row(
        at_setup(FaultKind.MALFORMED), said="Failed to parse", answered=True
    ),
    "malformed frame mid-turn": Row(at_turn(FaultKind.MALFORMED), said="Failed to parse"),
    "unknown message at setup": Row(
        at_setup(FaultKind.UNKNOWN_MESSAGE), said="not setupComplete", answered=True
    ),
    "no turnComplete": Row(
        at_turn(FaultKind.NO_TURN_COMPLETE), said="without turnComplete", answered=True
    ),
    "stall after tool response": Row(
        at_turn(FaultKind.STALL_AFTER_TOOL_RESPONSE), reply=TOOL_THEN_ANSWER, answered=True
    ),
    "wrong output mime": Row(output_mime="audio/mpeg", said="sent audio as 'audio/mpeg'"),
}


async def settle(r: Running, after: int, within_s: float = 15.0) -> str:
    """Wait until the appliance left `idle` at or after index `after` and came back to a
    resting state; that state."""
    async with asyncio.timeout(within_s):
        while not (len(r.states) > after + 1 and r.states[-1] in SETTLED):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything that follows at once (a retry) shows now
    return r.states[-1]


def daemon_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The daemon's own log records (the emulator logs under appliance.live.emulator)."""
    return [
        rec
        for rec in caplog.records
        if rec.name.startswith("appliance") and not rec.name.startswith("appliance.live.emulator")
    ]


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=row.marks, id=name) for name, row in ROWS.items()]
)
async def test_fault(
    name: str,
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = ROWS[name]
    caplog.set_level(logging.INFO)
    emu.scenario.realtime_factor = 8.0
    emu.scenario.default_reply = row.reply
    emu.scenario.output_mime = row.output_mime
    emu.scenario.faults = [Fault(f.kind, f.connection, f.turn, f.time_left_s) for f in row.faults]
    async with running_appliance(jack_audio, emu, tmp_path, **FAST) as r:
        r.app.post(Ask("hello"))
        state = await settle(r, 0)
        first = list(r.states)
        connections = len(emu.connections)
        status = await call(control(r).status)  # the daemon is up and answers
        assert status["state"] == state
        if row.fatal is not None:
            assert state == "error", first
            assert row.fatal in (status["last_error"] or "")
            await asyncio.sleep(1.0)
            assert len(emu.connections) == connections == 1  # no retry on its own
        else:
            assert state == "idle", first
        if row.answered:
            assert "speaking" in first and "SessionLost" not in caplog.text, first
            turns = [c.turns for c in emu.connections]
            assert sum(turns) >= 1, "the question got no reply from the service"

        emu.scenario.faults = []  # the fault passed: the next ask works
        emu.scenario.output_mime = None
        emu.scenario.default_reply = ANSWER
        after = len(r.states)
        r.app.post(Ask("and again"))
        speaking = await r.wait_state("speaking", after=after, within_s=15)
        await r.wait_state("idle", after=speaking, within_s=15)
        assert (await call(control(r).status))["state"] == "idle"

    records = daemon_records(caplog)
    if row.said is not None:
        about = [rec.getMessage() for rec in records if row.said in rec.getMessage()]
        assert len(about) == 1, about
    loud = [rec.getMessage() for rec in records if rec.levelno >= logging.WARNING]
    assert len(loud) <= (1 if row.said else 0) + 1, loud  # (+1: a playback underrun)
    assert not any("Traceback" in (rec.exc_text or "") for rec in records)
