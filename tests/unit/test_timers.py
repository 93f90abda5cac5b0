"""Timers and alarms on a clock the test moves: set, persisted, due, missed, DST."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.timers.book import Entry, TimerBook, next_occurrence
from appliance.timers.fakes import ManualClock
from appliance.timers.keeper import TimerKeeper
from appliance.tools.timers import TimerTools

BERLIN = ZoneInfo("Europe/Berlin")


def local(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=BERLIN)  # type: ignore[misc, arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def keeper_at(tmp_path: Path, when: dt.datetime) -> tuple[TimerKeeper, list[Entry]]:
    rung: list[Entry] = []
    keeper = TimerKeeper(tmp_path, rung.append, ManualClock(when, "Europe/Berlin"))
    keeper.start()
    await settle()
    return keeper, rung


async def test_two_timers_ring_in_order_and_only_when_due(tmp_path: Path) -> None:
    keeper, rung = await keeper_at(tmp_path, local(2026, 11, 30, 12, 0))
    clock = keeper.clock
    assert isinstance(clock, ManualClock)
    keeper.add_timer(600, "pasta")
    keeper.add_timer(180, "tea")
    await settle()
    clock.advance(179)
    await settle()
    assert rung == []
    clock.advance(1)
    await settle()
    assert [e.label for e in rung] == ["tea"]
    clock.advance(420)
    await settle()
    assert [e.label for e in rung] == ["tea", "pasta"]
    assert keeper.listing() == []
    await keeper.close()


async def test_a_timer_survives_a_restart(tmp_path: Path) -> None:
    keeper, _ = await keeper_at(tmp_path, local(2026, 11, 30, 12, 0))
    entry = keeper.add_timer(600, "pasta")
    await keeper.close()
    # The service restarts 5 minutes later: the timer is still due at 12:10.
    again, rung = await keeper_at(tmp_path, local(2026, 11, 30, 12, 5))
    assert [t["id"] for t in again.listing()] == [entry.id]
    assert again.listing()[0]["rings_at"] == "2026-11-30T12:10:00+01:00"
    assert isinstance(again.clock, ManualClock)
    again.clock.advance(300)
    await settle()
    assert [e.id for e in rung] == [entry.id]
    await again.close()


async def test_missed_while_off_rings_if_recent_else_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keeper, _ = await keeper_at(tmp_path, local(2026, 11, 30, 6, 0))
    keeper.add_alarm("07:00", "work")
    keeper.add_alarm("06:30", "early")
    keeper.add_alarm("06:58", "daily", weekdays=list(range(7)))
    await keeper.close()
    with caplog.at_level(logging.INFO):
        again, rung = await keeper_at(tmp_path, local(2026, 11, 30, 7, 5))
    assert sorted(e.label for e in rung) == ["daily", "work"]  # 7 and 5 min late; "early" 35
    assert any("missed" in r.getMessage() and "early" in r.getMessage() for r in caplog.records)
    # The daily alarm moved on to tomorrow; the others are done.
    assert [(t["label"], t["rings_at"]) for t in again.listing()] == [
        ("daily", "2026-12-01T06:58:00+01:00")
    ]
    await again.close()


async def test_an_alarm_across_midnight_and_a_dst_change(tmp_path: Path) -> None:
    # Saturday 24 October 2026, 23:30; clocks go back at 03:00 on Sunday.
    keeper, rung = await keeper_at(tmp_path, local(2026, 10, 24, 23, 30))
    keeper.add_alarm("07:00", "sunday")
    listing = keeper.listing()
    assert listing[0]["rings_at"] == "2026-10-25T07:00:00+01:00"  # winter time already
    clock = keeper.clock
    assert isinstance(clock, ManualClock)
    # 7.5 wall-clock hours but 8.5 real hours later: 06:59 is not yet due.
    clock.advance(8.5 * 3600 - 60)
    await settle()
    assert clock.now().hour == 6 and clock.now().minute == 59 and rung == []
    clock.advance(60)
    await settle()
    assert [e.label for e in rung] == ["sunday"]
    await keeper.close()


def test_next_occurrence_on_dst_edges() -> None:
    # Spring forward (29 March 2026, 02:00 -> 03:00): 02:30 does not exist, rings 03:30.
    assert next_occurrence(2, 30, [], local(2026, 3, 29, 1, 0)).isoformat() == (
        "2026-03-29T03:30:00+02:00"
    )
    # Fall back (25 October 2026): 02:30 happens twice, rings at the first.
    first = next_occurrence(2, 30, [], local(2026, 10, 25, 1, 0))
    assert first.astimezone(dt.UTC).hour == 0
    # Weekdays only: Friday evening -> Monday.
    monday = next_occurrence(7, 0, [0, 1, 2, 3, 4], local(2026, 11, 27, 20, 0))
    assert monday.date() == dt.date(2026, 11, 30)


async def test_a_timer_lasts_real_time_across_a_dst_change(tmp_path: Path) -> None:
    keeper, _ = await keeper_at(tmp_path, local(2026, 10, 25, 1, 55) + dt.timedelta(hours=1))
    # 02:55 summer time; in 10 real minutes it is 02:05 winter time.
    entry = keeper.add_timer(600, "")
    assert entry.due.astimezone(BERLIN).isoformat() == "2026-10-25T02:05:00+01:00"
    await keeper.close()


def test_a_corrupt_file_starts_empty_and_is_kept_aside(tmp_path: Path) -> None:
    (tmp_path / "timers.json").write_text('{"entries": [{"id": 3}]}')
    book = TimerBook(tmp_path)
    assert book.entries == {}
    assert (tmp_path / "timers.json.bad").exists()


async def test_the_model_sets_lists_and_cancels(tmp_path: Path) -> None:
    keeper, _ = await keeper_at(tmp_path, local(2026, 11, 30, 12, 0))
    tools = {t.declaration["name"]: t for t in await TimerTools(keeper).tools()}
    ctx = None
    set_timer = await tools["set_timer"].handler(ctx, {"minutes": 10, "label": "pasta"})  # type: ignore[arg-type]
    assert set_timer["rings_at"] == "2026-11-30T12:10:00+01:00" and set_timer["id"] == "t1"
    alarm = await tools["set_alarm"].handler(ctx, {"time": "7:00", "repeat": ["weekdays"]})  # type: ignore[arg-type]
    assert alarm["repeat"] == ["monday", "tuesday", "wednesday", "thursday", "friday"]
    bad = await tools["set_alarm"].handler(ctx, {"time": "25:00"})  # type: ignore[arg-type]
    assert "HH:MM" in bad["error"]
    zero = await tools["set_timer"].handler(ctx, {})  # type: ignore[arg-type]
    assert "1 s" in zero["error"]
    listed = await tools["list_timers"].handler(ctx, {})  # type: ignore[arg-type]
    assert [t["id"] for t in listed["timers_and_alarms"]] == ["t1", "a2"]
    gone = await tools["cancel_timer"].handler(ctx, {"id": "t1"})  # type: ignore[arg-type]
    assert "pasta" in gone["result"]
    missing = await tools["cancel_timer"].handler(ctx, {"id": "t1"})  # type: ignore[arg-type]
    assert missing["error"] == "no timer or alarm 't1' (set: a2)"
    await keeper.close()
