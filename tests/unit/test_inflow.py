"""Which Live frames `Inflow` drops unparsed: only a serverContent with nothing in it."""

from __future__ import annotations

import pytest

from appliance.live.inflow import Inflow, carries_nothing


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


@pytest.mark.parametrize(
    "frame",
    [
        b'{"serverContent": {"inputTranscription": {"text": "", "finished": true}}}',
        b'{"serverContent": {"outputTranscription": {"languageCode": "de-DE"}}}',
        b'{"serverContent": {"modelTurn": {"parts": [], "somethingNew": 1}}}',
    ],
)
def test_a_flag_inside_an_empty_transcription_or_turn_is_something(frame: bytes) -> None:
    assert not carries_nothing(frame)


async def test_a_websocket_without_decode_is_read_as_the_sdk_falls_back_to() -> None:
    # google-genai calls `recv(decode=False)` and, on TypeError (websockets' legacy
    # client has no `decode`), `recv()`: the wrapper must let that fallback work.
    class LegacyWebsocket:
        def __init__(self) -> None:
            self.frames = [b'{"serverContent": {}}', b'{"goAway": {"timeLeft": "1s"}}']

        async def recv(self) -> bytes:
            return self.frames.pop(0)

    inflow = Inflow(LegacyWebsocket())
    with pytest.raises(TypeError):
        await inflow.recv(decode=False)
    assert await inflow.recv() == b'{"goAway": {"timeLeft": "1s"}}'
    assert inflow.dropped == 1
