"""Which Live frames `Inflow` drops unparsed: only a serverContent with nothing in it."""

from __future__ import annotations

import pytest

from appliance.live.inflow import carries_nothing


@pytest.mark.parametrize(
    "frame",
    [
        b'{"serverContent": {}}',
        b'{"serverContent": {"outputTranscription": {"text": ""}}}',
        b'{"serverContent": {"modelTurn": {"parts": []}, "turnComplete": false}}',
    ],
)
def test_empty_frames_are_dropped(frame: bytes) -> None:
    assert carries_nothing(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"serverContent": {"turnComplete": true}}',
        b'{"serverContent": {"outputTranscription": {"text": "hi"}}}',
        b'{"serverContent": {"modelTurn": {"parts": [{"text": "x"}]}}}',
        b'{"serverContent": {}, "usageMetadata": {"totalTokenCount": 1}}',
        b'{"serverContent": {"somethingNew": 1}}',
        b'{"serverContent": "',
        b"[]",
    ],
)
def test_frames_that_carry_something_go_to_the_sdk(frame: bytes) -> None:
    assert not carries_nothing(frame)
