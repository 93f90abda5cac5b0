"""Which reply audio the client plays, and at what rate."""

from __future__ import annotations

import pytest

from appliance.audio import dsp
from appliance.live.client import pcm_rate


@pytest.mark.parametrize(
    ("mime", "rate"),
    [
        (None, 24000),
        ("audio/pcm", 24000),
        ("audio/pcm;rate=24000", 24000),
        ("audio/pcm; rate=48000", 48000),
        ("AUDIO/L16;rate=16000", 16000),
        ("audio/pcm;rate=abc", None),
        ("audio/pcm;rate=1", None),
        ("audio/mpeg", None),
        ("audio/ogg;codecs=opus", None),
    ],
)
def test_pcm_rate_of_a_mime_type(mime: str | None, rate: int | None) -> None:
    assert pcm_rate(mime) == rate


def test_resampling_keeps_the_duration() -> None:
    pcm = bytes(2 * 48000)  # 1 s at 48 kHz
    assert len(dsp.resample(pcm, 48000, 24000)) == 2 * 24000
    assert dsp.resample(pcm, 24000, 24000) is pcm
