"""Paced tests on the JACK dummy rig: frames are counted on the JACK clock, not wall time."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from appliance.audio.capture import Capture
from appliance.audio.devices import DeviceState
from appliance.audio.fakes import eventually
from appliance.audio.playback import Playback
from appliance.audio.volume import Volume
from appliance.config import AudioConfig
from tests.rig.jack import JackAudio, tone

pytestmark = [pytest.mark.jack, pytest.mark.timeout(90)]


def reply_pcm(seconds: float, hz: float = 610.0) -> bytes:
    """A 24 kHz S16_LE reply; 610 Hz never repeats exactly per 10 ms JACK block."""
    return (tone(hz, seconds, rate=24000, level=0.5) * 32767).astype("<i2").tobytes()


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


async def test_capture_hears_the_injected_signal(jack_audio: JackAudio) -> None:
    config = AudioConfig(capture_device=jack_audio.capture_device)
    capture = Capture(config)
    jack_audio.rig.play(tone(440, 5), loop=True)
    await capture.start()
    async with capture.open_stream() as stream:
        got = []
        async for period in stream:
            got.append(period.pcm)
            if len(got) == 40:
                break
    await capture.stop()
    assert dominant_hz(b"".join(got[-25:]), 16000) == pytest.approx(440, abs=20)


async def test_stop_mid_reply_leaves_at_most_one_period_after_the_stop(
    jack_audio: JackAudio,
) -> None:
    config = AudioConfig(playback_device=jack_audio.playback_device, volume=100)
    playback = Playback(config, volume=Volume(config))
    rig = jack_audio.rig
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    reply = reply_pcm(3.0)
    for i in range(0, len(reply), 1920):  # the Live API sends faster than real time
        playback.enqueue(reply[i : i + 1920])
    await asyncio.sleep(0.6)
    stop_frame = rig.frame_time
    await playback.stop()
    await asyncio.sleep(0.3)
    last = rig.last_sound_frame()
    await playback.close()
    assert last is not None
    sounded_before = rig.sound_frames()
    assert len(sounded_before) * rig.block >= 0.4 * rig.rate  # the reply was playing
    period_frames = rig.rate * config.period_ms // 1000
    assert last - stop_frame <= period_frames


async def test_reply_tail_plays_out_and_starved_playback_recovers(
    jack_audio: JackAudio,
) -> None:
    config = AudioConfig(playback_device=jack_audio.playback_device, volume=100, jitter_ms=40)
    playback = Playback(config, volume=Volume(config))
    rig = jack_audio.rig
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    first = reply_pcm(0.3)
    playback.enqueue(first)
    await asyncio.sleep(0.6)  # the network stalls: the buffer runs dry (forced underrun)
    second = reply_pcm(0.5, hz=830)
    start = rig.frame_time
    playback.enqueue(second)
    assert await playback.drain() is True
    end = rig.frame_time
    await playback.close()
    assert playback.underruns.total >= 1
    frames = rig.sound_frames()
    heard = frames[(frames >= start) & (frames < end)]
    # the whole 0.5 s second part came out after the stall (no truncated tail)
    assert len(heard) * rig.block >= 0.5 * rig.rate - rig.block


@pytest.mark.timeout(120)
async def test_capture_survives_the_server_going_away_and_coming_back(
    jack_audio: JackAudio,
) -> None:
    # libjack keeps per-process state: the capture thread (through the alsa plugin) must
    # not open a client while this thread starts the server and the rig client, so the
    # retry waits longer than the revival takes.
    capture = Capture(AudioConfig(capture_device="rigmic"), retry_s=(3.0, 3.0))
    try:
        await capture.start()
        await eventually(lambda: capture.periods_read > 10)
        jack_audio.kill_server()  # the "USB mic" is unplugged mid-stream
        await eventually(lambda: capture.state != DeviceState.OK, within_s=10)
        assert capture.error is not None and "rigmic" in str(capture.error)
        jack_audio.revive_server()  # plugged back in
        jack_audio.rig.play(tone(523, 5), loop=True)
        await eventually(lambda: capture.state == DeviceState.OK, within_s=15)
        async with capture.open_stream() as stream:
            got = [(await anext(stream)).pcm for _ in range(30)]
        assert dominant_hz(b"".join(got[-20:]), 16000) == pytest.approx(523, abs=20)
    finally:
        await capture.stop()
        if not jack_audio.server.running:
            jack_audio.revive_server()


async def test_a_stream_opened_while_idle_gets_the_preroll_then_alsa_backlog_in_order(
    jack_audio: JackAudio,
) -> None:
    # While idle the capture thread reads in batches, so at open ALSA still holds up to
    # a batch of audio newer than the ring: it must follow the ring with no gap, no
    # duplicate, stamped in capture order, and not be timed as a live hand-off.
    config = AudioConfig(capture_device=jack_audio.capture_device, preroll_ms=200)
    capture = Capture(config)
    jack_audio.rig.play(tone(440, 5), loop=True)
    await capture.start()
    try:
        await eventually(lambda: capture.periods_read >= 30, within_s=15)
        async with capture.open_stream() as stream:
            got = [await anext(stream) for _ in range(30)]
            timed = capture.stamps.capture_to_handoff.count
    finally:
        await capture.stop()
    seqs = [p.seq for p in got]
    assert seqs == list(range(seqs[0], seqs[0] + 30))
    stamps = [p.captured_ns for p in got]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert timed <= 30 - 10  # the 200 ms ring (10 periods) and the backlog are not live
    assert dominant_hz(b"".join(p.pcm for p in got), 16000) == pytest.approx(440, abs=20)


async def test_rapid_interrupt_and_reply_cycles_keep_the_speaker_playing(
    jack_audio: JackAudio,
) -> None:
    # After drop() the jack plugin's avail() repeats a stale value below a period: a
    # reply that followed an interruption waited for room that never came, and the
    # device was declared lost ("it took no audio for 2000 ms").
    config = AudioConfig(playback_device=jack_audio.playback_device, volume=100)
    states: list[DeviceState] = []
    playback = Playback(config, volume=Volume(config), on_state=lambda s, e: states.append(s))
    rig = jack_audio.rig
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    reply = reply_pcm(2.0)
    for cycle in range(20):
        for i in range(0, len(reply), 1920):
            playback.enqueue(reply[i : i + 1920])
        await asyncio.sleep(0.15 + 0.01 * (cycle % 5))
        await playback.stop()
    start = rig.frame_time
    for i in range(0, len(reply), 1920):
        playback.enqueue(reply[i : i + 1920])
    assert await playback.drain() is True
    end = rig.frame_time
    await playback.close()
    assert DeviceState.MISSING not in states and playback.recoveries == 0
    frames = rig.sound_frames()
    heard = frames[(frames >= start) & (frames < end)]
    assert len(heard) * rig.block >= 1.9 * rig.rate  # the last reply played whole
