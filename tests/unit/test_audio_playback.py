"""Playback logic over a fake PCM: cushion, drain tail, stop, underruns, faults, volume."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from appliance.audio.devices import DeviceMissingError, DeviceState, PcmSpec
from appliance.audio.fakes import EPIPE, FakePlaybackPcm, eventually
from appliance.audio.playback import Playback
from appliance.audio.volume import Volume
from appliance.config import AudioConfig

pytestmark = pytest.mark.timeout(30)


def ramp(n: int, start: int = 1) -> bytes:
    return b"".join(((start + i) % 30000).to_bytes(2, "little", signed=True) for i in range(n))


class Opener:
    def __init__(self) -> None:
        self.pcms: list[FakePlaybackPcm] = []

    def __call__(self, spec: PcmSpec) -> FakePlaybackPcm:
        self.pcms.append(FakePlaybackPcm(spec))
        return self.pcms[-1]


async def started(config: AudioConfig, **kw: object) -> tuple[Playback, Opener]:
    opener = Opener()
    playback = Playback(config, opener=opener, **kw)  # type: ignore[arg-type]
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    return playback, opener


async def test_drain_plays_everything_then_pads_the_tail_to_whole_periods() -> None:
    events: list[bool] = []
    playback, opener = await started(AudioConfig(), on_playing=events.append)
    audio = ramp(1000)  # 1000 frames: 2 periods of 480 + 40
    playback.enqueue(audio[:700], time.monotonic_ns())
    playback.enqueue(audio[700:])
    assert playback.playing
    assert await playback.drain() is True
    assert not playback.playing
    await playback.close()
    written = bytes(opener.pcms[0].written)
    assert written[: len(audio)] == audio
    assert len(written) == 2 * (1440 + 480)  # up to the period boundary, plus one period
    assert set(written[len(audio) :]) == {0}
    assert events == [True, False]
    assert playback.stamps.receive_to_write.count == 2


async def test_nothing_is_written_before_the_jitter_cushion_fills() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=500))
    playback.enqueue(ramp(480))  # 20 ms of 500 ms
    await asyncio.sleep(0.1)
    assert opener.pcms[0].writes == 0
    playback.enqueue(ramp(12000))  # now 520 ms queued
    await eventually(lambda: bool(opener.pcms[0].writes))
    await playback.close()


async def test_a_short_sound_starts_after_the_cushion_time_even_without_drain() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=40))
    playback.enqueue(ramp(100))
    await eventually(lambda: bool(opener.pcms[0].writes))
    await playback.close()


async def test_stop_drops_the_queue_and_the_alsa_buffer() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=1000))
    playback.enqueue(ramp(12000))  # 500 ms, below the cushion: all still queued
    await playback.stop()
    assert not playback.playing
    pcm = opener.pcms[0]
    assert pcm.drops >= 1
    await asyncio.sleep(0.05)
    assert pcm.writes == 0
    assert await playback.drain() is True  # nothing left: drains at once
    assert playback.stamps.stop_call.count == 1
    await playback.close()


async def test_stop_cuts_a_pending_drain_short() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=0))
    pcm = opener.pcms[0]
    pcm.stalled = True  # the device never plays: drain cannot finish by itself
    playback.enqueue(ramp(4800))
    drain = asyncio.create_task(playback.drain())
    await asyncio.sleep(0)  # let drain() register before anything else happens
    await eventually(lambda: pcm.avail() <= 0)
    assert not drain.done()
    await playback.stop()
    assert await drain is False
    assert pcm.avail() == 1440  # the ALSA buffer was dropped
    assert len(pcm.written) == 2 * 1440  # and the rest of the queue never written
    await playback.close()


async def test_underrun_is_counted_and_the_audio_is_not_lost() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=0))
    opener.pcms[0].script = [EPIPE]
    audio = ramp(960)
    playback.enqueue(audio)
    assert await playback.drain() is True
    await playback.close()
    assert playback.underruns.total == 1
    assert bytes(opener.pcms[0].written[: len(audio)]) == audio


async def test_missing_device_drops_audio_and_retries() -> None:
    attempts = 0
    pcms: list[FakePlaybackPcm] = []

    def opener(spec: PcmSpec) -> FakePlaybackPcm:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise DeviceMissingError(spec.device, "playback", "No such device")
        pcms.append(FakePlaybackPcm(spec))
        return pcms[-1]

    playback = Playback(AudioConfig(playback_device="usbspk"), opener=opener, retry_s=(0.02, 0.05))
    await playback.start()
    await asyncio.sleep(0.005)
    assert playback.state == DeviceState.MISSING
    assert playback.error is not None and "aplay -L" in str(playback.error)
    playback.enqueue(ramp(100))
    assert playback.dropped_chunks == 1
    assert await playback.drain() is False
    await playback.stop()  # returns at once with no device
    await eventually(lambda: playback.state == DeviceState.OK)
    await playback.close()
    assert attempts == 3


async def test_device_failing_mid_reply_releases_waiters() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=0), retry_s=(0.01, 0.02))
    opener.pcms[0].script = [Exception("No such device [spk]")]
    playback.enqueue(ramp(2000))
    assert await playback.drain() is False
    await eventually(lambda: len(opener.pcms) >= 2 and playback.state == DeviceState.OK)
    await playback.close()


async def test_software_volume_scales_samples(tmp_path: object) -> None:
    config = AudioConfig(volume=50)
    volume = Volume(config)
    playback, opener = await started(config, volume=volume)
    playback.enqueue((10000).to_bytes(2, "little", signed=True) * 480)
    await playback.drain()
    await playback.close()
    first = int.from_bytes(opener.pcms[0].written[:2], "little", signed=True)
    assert first == 1250  # 50 % -> 0.5 ** 3


async def test_rapid_stops_and_replies_on_a_device_whose_avail_is_stale_after_drop() -> None:
    # The alsa jack plugin after drop(): avail() keeps saying "less than a period" until
    # the PCM is written again. The writer must not wait for room that never comes.
    playback, opener = await started(AudioConfig(jitter_ms=0))
    pcm = opener.pcms[0]
    pcm.stale_after_drop = True
    pcm.stalled = True  # keeps audio in the buffer, so each stop drops some
    for cycle in range(10):
        playback.enqueue(ramp(4800, start=cycle))
        await eventually(lambda: pcm.avail() <= 0)
        await playback.stop()
    pcm.stalled = False
    writes = pcm.writes
    playback.enqueue(ramp(960))
    assert await playback.drain() is True
    assert pcm.writes > writes and playback.recoveries == 0
    assert playback.state == DeviceState.OK
    await playback.close()


async def test_a_device_stuck_mid_reply_is_re_prepared_and_the_reply_goes_on() -> None:
    playback, opener = await started(AudioConfig(jitter_ms=0))
    pcm = opener.pcms[0]
    pcm.stalled = True
    playback.enqueue(ramp(24000))  # a second of reply; the device takes 60 ms and sticks
    await eventually(lambda: playback.recoveries == 1, within_s=2.0)
    with pcm.lock:  # re-preparing helped: the device plays again
        pcm.stalled, pcm.pending = False, 0
    assert await playback.drain() is True
    assert playback.state == DeviceState.OK and len(opener.pcms) == 1


async def test_a_device_that_sticks_again_after_re_preparing_is_reported_and_reopened() -> None:
    states: list[DeviceState] = []
    playback, opener = await started(
        AudioConfig(jitter_ms=0), on_state=lambda s, e: states.append(s), retry_s=(0.05, 0.05)
    )
    opener.pcms[0].stalled = True
    playback.enqueue(ramp(48000))
    assert await playback.drain() is False  # cut short: the device was lost
    await eventually(lambda: len(opener.pcms) == 2 and playback.state == DeviceState.OK)
    assert playback.recoveries == 1 and DeviceState.MISSING in states
    await playback.close()


async def test_a_device_whose_write_hangs_is_reopened_only_once_it_answers() -> None:
    # A write that hangs in alsa-lib (pyalsaaudio lets go of the GIL there) may be a
    # sound server that hangs; opening its device again in this process would block in
    # the open holding the GIL, freezing the daemon. The fresh writer opens it only after
    # a child process saw it answer (`after_stall`), as after any other stall.
    hang = threading.Event()
    specs: list[PcmSpec] = []

    class Hangs(FakePlaybackPcm):
        def write(self, data: bytes) -> int:
            hang.wait()
            return super().write(data)

    def opener(spec: PcmSpec) -> FakePlaybackPcm:
        specs.append(spec)
        return Hangs(spec) if len(specs) == 1 else FakePlaybackPcm(spec)

    playback = Playback(AudioConfig(jitter_ms=0), opener=opener)
    await playback.start()
    await eventually(lambda: playback.state == DeviceState.OK)
    playback.enqueue(ramp(4800))
    assert await playback.drain() is False  # the writer hangs: given up after STUCK_S
    await eventually(lambda: len(specs) == 2)
    hang.set()
    await playback.close()
    assert playback.stuck == 1
    assert [s.after_stall for s in specs] == [False, True]
