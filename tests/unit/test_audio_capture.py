"""Capture logic over a fake PCM: pre-roll then live, bounds, overruns, device faults."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from appliance.audio.capture import Capture, Period
from appliance.audio.devices import DeviceMissingError, DeviceState, PcmSpec
from appliance.audio.fakes import EPIPE, FakeCapturePcm, eventually
from appliance.config import AudioConfig

pytestmark = pytest.mark.timeout(30)


def number(period: Period) -> int:
    return int.from_bytes(period.pcm[:2], "little", signed=True)


async def test_stream_yields_preroll_then_live_without_gap_or_duplicate() -> None:
    config = AudioConfig(period_ms=20, preroll_ms=100)
    pcms: list[FakeCapturePcm] = []

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        pcms.append(FakeCapturePcm(spec))
        return pcms[-1]

    capture = Capture(config, opener=opener)
    await capture.start()
    await eventually(lambda: capture.periods_read >= 30)  # ring long since full
    assert capture.preroll_ms() == 100
    got: list[Period] = []
    async with capture.open_stream() as stream:
        async for period in stream:
            got.append(period)
            if len(got) == 40:
                break
    await capture.stop()
    seqs = [p.seq for p in got]
    assert seqs == list(range(seqs[0], seqs[0] + 40))
    assert seqs[0] >= 25  # starts with the ring (5 periods), not with period 0
    assert [number(p) for p in got] == seqs
    assert all(len(p.pcm) == 640 for p in got)  # 20 ms of 16 kHz mono S16_LE
    # only live periods are timed (the pre-roll is old by design)
    assert 30 <= capture.stamps.capture_to_handoff.count <= 35


async def test_no_stream_means_the_ring_holds_only_the_last_preroll() -> None:
    capture = Capture(AudioConfig(preroll_ms=60), opener=FakeCapturePcm)
    await capture.start()
    await eventually(lambda: capture.periods_read >= 20)
    async with capture.open_stream() as stream:
        first = await anext(stream)
        read_so_far = capture.periods_read
    await capture.stop()
    assert read_so_far - first.seq <= 3 + 2  # 60 ms ring = 3 periods (+ reads since)


async def test_a_slow_consumer_loses_the_oldest_periods_and_they_are_counted() -> None:
    capture = Capture(AudioConfig(preroll_ms=0), opener=FakeCapturePcm)
    await capture.start()
    async with capture.open_stream(maxlen=5) as stream:
        start = capture.periods_read
        await eventually(lambda: capture.periods_read >= start + 30)
        got = [await anext(stream) for _ in range(5)]
        assert stream.dropped >= 20
    await capture.stop()
    seqs = [p.seq for p in got]
    assert seqs == sorted(seqs) and seqs[0] >= start + 20  # the newest were kept


async def test_stream_ends_when_capture_stops() -> None:
    capture = Capture(AudioConfig(), opener=FakeCapturePcm)
    await capture.start()
    async with capture.open_stream() as stream:
        await anext(stream)
        await capture.stop()
        rest = [p async for p in stream]
    assert len(rest) < 60  # bounded, and the loop ended


async def test_overruns_are_recovered_counted_and_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pcm_holder: list[FakeCapturePcm] = []

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        pcm = FakeCapturePcm(spec)
        pcm.script = [EPIPE] * 7
        pcm_holder.append(pcm)
        return pcm

    capture = Capture(AudioConfig(), opener=opener)
    with caplog.at_level(logging.WARNING):
        await capture.start()
        await eventually(lambda: capture.periods_read >= 5)
        await capture.stop()
    assert capture.overruns.total == 7
    lines = [r for r in caplog.records if "overruns" in r.getMessage()]
    assert 1 <= len(lines) <= 2  # the first at once, the rest folded into one summary
    assert sum(int(r.getMessage().split()[0]) for r in lines) == 7
    assert capture.state == DeviceState.STOPPED


async def test_missing_device_is_reported_and_retried_until_it_appears() -> None:
    attempts = 0
    states: list[DeviceState] = []

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise DeviceMissingError(spec.device, "capture", "No such device")
        return FakeCapturePcm(spec)

    capture = Capture(
        AudioConfig(capture_device="usbmic"),
        opener=opener,
        on_state=lambda state, error: states.append(state),
        retry_s=(0.01, 0.02),
    )
    await capture.start()
    await eventually(lambda: capture.periods_read >= 3)
    await capture.stop()
    assert attempts == 3
    assert states[:3] == [DeviceState.STARTING, DeviceState.MISSING, DeviceState.OK]


async def test_device_vanishing_mid_stream_is_reopened() -> None:
    opened: list[FakeCapturePcm] = []

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        pcm = FakeCapturePcm(spec, start=1000 * len(opened))
        if not opened:
            pcm.script = [0, 0, Exception("No such device [usbmic]")]
        opened.append(pcm)
        return pcm

    errors: list[str] = []
    capture = Capture(
        AudioConfig(capture_device="usbmic"),
        opener=opener,
        on_state=lambda s, e: errors.append(str(e)) if e else None,
        retry_s=(0.01, 0.02),
    )
    await capture.start()
    await eventually(lambda: len(opened) == 2 and capture.periods_read >= 3)
    await capture.stop()
    assert opened[0].closed and opened[1].closed
    assert any("usbmic" in e and "arecord -L" in e for e in errors)


async def test_two_channel_device_gives_the_configured_channel_with_gain() -> None:
    class Stereo(FakeCapturePcm):
        def read(self) -> tuple[int, bytes]:
            frames = self.spec.period_frames
            left = (100).to_bytes(2, "little", signed=True)
            right = (-3000).to_bytes(2, "little", signed=True)
            return frames, (left + right) * frames

    config = AudioConfig(capture_channels=2, capture_channel=1, mic_gain_db=20.0)
    capture = Capture(config, opener=Stereo)
    await capture.start()
    async with capture.open_stream() as stream:
        period = await anext(stream)
    await capture.stop()
    assert len(period.pcm) == 640
    samples = {int.from_bytes(period.pcm[i : i + 2], "little", signed=True) for i in (0, 2, 638)}
    assert samples == {-30000}  # right channel, x10


async def test_a_read_that_hangs_is_reported_and_the_device_reopened() -> None:
    # A read stuck inside alsa-lib (a FIFO-backed `file` plugin whose writer stopped)
    # is out of reach of poll(): the watch on the loop reports it and reopens.
    hang = threading.Event()
    opened: list[FakeCapturePcm] = []

    class Hangs(FakeCapturePcm):
        def read(self) -> tuple[int, bytes]:
            if self.n == 5:
                hang.wait()
            return super().read()

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        opened.append(Hangs(spec) if not opened else FakeCapturePcm(spec, start=1000))
        return opened[-1]

    states: list[tuple[DeviceState, str]] = []
    capture = Capture(
        AudioConfig(capture_device="fifomic"),
        opener=opener,
        on_state=lambda s, e: states.append((s, str(e))),
        retry_s=(0.01, 0.02),
    )
    await capture.start()
    await eventually(lambda: len(opened) == 2 and capture.periods_read >= 10, within_s=10)
    assert capture.state == DeviceState.OK and capture.stuck == 1
    stalled = [e for s, e in states if s == DeviceState.MISSING]
    assert len(stalled) == 1 and "'fifomic'" in stalled[0] and "did not return" in stalled[0]
    async with capture.open_stream() as stream:
        hang.set()  # the thread left behind returns: it delivers nothing and ends
        got = [await anext(stream) for _ in range(60)]
    await capture.stop()
    assert not [number(p) for p in got if 5 <= number(p) < 1000]  # none from the hung one
    assert [p.seq for p in got] == list(range(got[0].seq, got[0].seq + 60))
    await eventually(lambda: opened[0].closed)


async def test_a_capture_thread_that_dies_is_reported_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    opened: list[FakeCapturePcm] = []

    class Breaks(FakeCapturePcm):
        def close(self) -> None:  # raised outside what the read loop expects
            raise RuntimeError("close failed")

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        pcm = (Breaks if not opened else FakeCapturePcm)(spec, start=1000 * len(opened))
        pcm.script = [Exception("Input/output error")] if not opened else []
        opened.append(pcm)
        return pcm

    states: list[DeviceState] = []
    capture = Capture(AudioConfig(), opener=opener, on_state=lambda s, e: states.append(s))
    await capture.start()
    await eventually(lambda: len(opened) == 2 and capture.periods_read >= 3, within_s=10)
    assert DeviceState.FAILED in states and capture.state == DeviceState.OK
    await capture.stop()
    assert caplog.text.count("Traceback") == 1  # one line for the death, with its cause
    assert "close failed" in caplog.text


async def test_waiting_for_a_hung_device_to_answer_is_not_a_stuck_thread() -> None:
    # After a stall the device is reopened only once a child process saw it answer
    # (stalls.answers: up to 3 s). A thread waiting on that check is not hung in
    # alsa-lib: it must not be left behind, nor another started beside it (each would
    # start a child of its own while the sound server hangs).
    import time

    from appliance.audio.devices import DeviceStalledError

    probing = 0
    most = 0
    lock = threading.Lock()

    class Silent(FakeCapturePcm):
        def read(self) -> tuple[int, bytes]:
            time.sleep(0.001)
            return 0, b""  # the sound server stopped: nothing comes, no error

    def opener(spec: PcmSpec) -> FakeCapturePcm:
        nonlocal probing, most
        if not spec.after_stall:
            return Silent(spec)
        with lock:
            probing += 1
            most = max(most, probing)
        time.sleep(2.8)  # the child opening the hung device, killed at its bound
        with lock:
            probing -= 1
        raise DeviceStalledError(spec.device, "capture", "it still does not answer")

    capture = Capture(AudioConfig(), opener=opener, retry_s=(0.05, 0.1))
    await capture.start()
    await eventually(lambda: capture.state == DeviceState.MISSING, within_s=5)
    await asyncio.sleep(3)  # the first check ends 2.8 s after the stall, past stuck_s
    await capture.stop()
    assert (capture.stuck, most) == (0, 1)
