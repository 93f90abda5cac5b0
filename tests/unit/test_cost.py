"""Money from token counts, the daily limit, and a usage file that is not what it should be."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from appliance.config import CostConfig
from appliance.daemon.cost import Budget, price_of
from appliance.daemon.memory import USAGE_FILE, Tally, UsageBook
from appliance.live.events import Usage


def test_prices_by_side_and_modality() -> None:
    tally = Tally(prompt=1_000_000, response=1_000_000)
    tally.by_modality = {"prompt:AUDIO": 1_000_000, "response:AUDIO": 1_000_000}
    assert price_of(tally, CostConfig()) == pytest.approx(3.00 + 12.00)
    frames = Tally(prompt=2_000_000, response=0, thoughts=1_000_000)
    frames.by_modality = {"prompt:IMAGE": 1_000_000}  # and a million without a breakdown
    assert price_of(frames, CostConfig()) == pytest.approx(0.75 + 0.75 + 4.50)


def test_the_limit_is_reached_at_the_limit_and_zero_means_none() -> None:
    day = Tally(prompt=100_000, response=100_000)
    day.by_modality = {"prompt:AUDIO": 100_000, "response:AUDIO": 100_000}  # 1.50 USD
    assert Budget(CostConfig(daily_limit=1.5)).reached(day)
    assert not Budget(CostConfig(daily_limit=2.0)).reached(day)
    assert not Budget(CostConfig()).reached(day)
    status = Budget(CostConfig(daily_limit=1.5)).status(Tally(), day)
    assert status == {
        "currency": "USD",
        "conversation": 0.0,
        "today": 1.5,
        "daily_limit": 1.5,
        "limit_reached": True,
    }


def test_the_day_survives_a_restart_and_starts_again_at_midnight(tmp_path: Path) -> None:
    day = ["2026-11-30"]
    book = UsageBook(tmp_path, today=lambda: day[0])
    book.add(Usage(prompt_tokens=10, response_tokens=5, thoughts_tokens=2, total_tokens=17))
    again = UsageBook(tmp_path, today=lambda: day[0])
    assert again.today().total == 17 and again.today().thoughts == 2
    day[0] = "2026-12-01"
    assert again.today().total == 0


@pytest.mark.parametrize(
    "content",
    [
        "not json at all {",
        json.dumps({"day": datetime.date.today().isoformat(), "tally": {"prompt": "many"}}),
        json.dumps({"day": datetime.date.today().isoformat(), "tally": {"by_modality": [1]}}),
        json.dumps({"day": datetime.date.today().isoformat(), "tally": {}}).replace(
            "{}", '{"turns": 1e999}'
        ),
        json.dumps({"day": datetime.date.today().isoformat(), "tally": None}),
        json.dumps([1, 2, 3]),
    ],
)
def test_a_corrupt_usage_file_counts_from_zero_and_never_stops_the_service(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / USAGE_FILE).write_text(content)
    book = UsageBook(tmp_path)
    assert book.today().total == 0
    book.add(Usage(total_tokens=3))  # and it writes a good one again
    assert UsageBook(tmp_path).today().total == 3
