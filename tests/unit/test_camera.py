"""The camera gate, run through the real Picamera2Source code on the rig's stand-in
camera that makes real JPEGs: size bound, rate limit, never outside a conversation."""

from __future__ import annotations

import asyncio
import builtins
import io
import itertools
from typing import Any

import pytest

from appliance.config import CameraConfig
from appliance.hardware.camera import (
    Camera,
    CameraInactive,
    CameraUnavailable,
    Frame,
    Picamera2Source,
    bound_jpeg,
    frame_size,
    import_picamera2,
    jpeg_size,
    open_camera,
)
from tests.rig.frames import draw_frame, fake_picamera2, jpeg_dimensions

pytestmark = pytest.mark.timeout(30)

ON = CameraConfig(enabled=True)


def encode(size: tuple[int, int], **save: Any) -> bytes:
    buf = io.BytesIO()
    draw_frame(size, 1).save(buf, format="JPEG", **save)
    return buf.getvalue()


def test_frame_size_keeps_the_sensor_aspect() -> None:
    assert frame_size((4608, 2592), 768) == (768, 432)
    assert frame_size((3280, 2464), 768) == (768, 576)
    assert frame_size((2464, 3280), 512) == (384, 512)
    assert frame_size((640, 480), 768) == (640, 480)  # never scaled up


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"exif": b"Exif\x00\x00" + bytes(64)}])
def test_jpeg_size_reads_the_frame_header(save: dict[str, Any]) -> None:
    assert jpeg_size(encode((321, 123), **save)) == (321, 123)
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_size(b"\x89PNG....")


def test_bound_jpeg_shrinks_only_what_is_too_big() -> None:
    small = encode((640, 360))
    assert bound_jpeg(small, 768, 80) == (small, 640, 360)
    big, width, height = bound_jpeg(encode((1920, 1080)), 768, 80)
    assert (width, height) == (768, 432) == jpeg_dimensions(big)


async def test_frames_are_real_jpegs_within_the_size_bound() -> None:
    cls = fake_picamera2(sensor=(3280, 2464))
    camera = Camera(
        CameraConfig(enabled=True, max_size=512, jpeg_quality=70),
        Picamera2Source(CameraConfig(enabled=True, max_size=512, jpeg_quality=70), cls),
    )
    await camera.start()
    try:
        frame = await camera.capture_frame()
    finally:
        await camera.close()
    assert jpeg_dimensions(frame.jpeg) == (frame.width, frame.height) == (512, 384)
    assert frame.mime_type == "image/jpeg"
    cam = cls.instances[0]
    assert cam.options["quality"] == 70 and cam.closed
    assert cam.config is not None and cam.config["main"]["format"] == "RGB888"


async def test_an_oversized_source_is_still_bounded() -> None:
    cls = fake_picamera2(sensor=(2028, 1520), ignore_size=True)
    camera = Camera(ON, Picamera2Source(ON, cls))
    await camera.start()
    try:
        frame = await camera.capture_frame()
    finally:
        await camera.close()
    assert jpeg_dimensions(frame.jpeg) == (768, 576)


async def test_requests_are_rate_limited_to_max_fps() -> None:
    cls = fake_picamera2()
    camera = Camera(ON, Picamera2Source(ON, cls))  # max_fps 1
    await camera.start()
    try:
        frames = [await camera.capture_frame() for _ in range(3)]
    finally:
        await camera.close()
    gaps = [b.at - a.at for a, b in itertools.pairwise(frames)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # a lower bound: slowness only adds
    camera_gaps = [b - a for a, b in itertools.pairwise(cls.captures)]
    assert all(gap >= 0.99 for gap in camera_gaps), camera_gaps  # the sensor was asked no faster


async def test_stream_runs_only_between_start_and_stop() -> None:
    cls = fake_picamera2()
    active: list[bool] = []
    camera = open_camera(
        CameraConfig(enabled=True, mode="stream"), on_active=active.append, picamera2_class=cls
    )
    assert camera is not None and camera.mode == "stream"
    with pytest.raises(CameraInactive):
        await camera.capture_frame()  # idle: no frame
    assert cls.captures == []

    got: list[Frame] = []
    two = asyncio.Event()

    async def consume() -> None:
        async for frame in camera.frames():
            got.append(frame)
            if len(got) == 2:
                two.set()

    await camera.start()
    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(two.wait(), 10)
    await camera.stop()
    await asyncio.wait_for(consumer, 5)  # the stream ends by itself
    taken = len(cls.captures)
    await asyncio.sleep(1.2)
    assert len(cls.captures) == taken  # nothing after stop
    assert not cls.instances[0].started
    assert active == [True, False]
    with pytest.raises(CameraInactive):
        await camera.capture_frame()
    await camera.close()


async def test_stop_during_the_rate_limit_wait_returns_promptly_and_drops_the_frame() -> None:
    camera = Camera(CameraConfig(enabled=True, max_fps=0.1), Picamera2Source(ON, fake_picamera2()))
    await camera.start()
    await camera.capture_frame()
    waiting = asyncio.create_task(camera.capture_frame())  # must wait 10 s for its turn
    await asyncio.sleep(0.05)
    await asyncio.wait_for(camera.stop(), 5)  # far less than the 10 s
    with pytest.raises(CameraInactive):
        await waiting
    await camera.close()


def test_enabled_without_picamera2_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_picamera2(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "picamera2":
            raise ModuleNotFoundError("No module named 'picamera2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_picamera2)
    assert open_camera(CameraConfig()) is None  # disabled: picamera2 is never imported
    with pytest.raises(CameraUnavailable) as err:
        open_camera(ON)
    message = str(err.value)
    assert "sudo apt install python3-picamera2" in message
    assert "--system-site-packages" in message
    with pytest.raises(CameraUnavailable):
        import_picamera2()


async def test_no_camera_attached_is_a_clear_error() -> None:
    camera = Camera(ON, Picamera2Source(ON, fake_picamera2(fail_open=True)))
    with pytest.raises(CameraUnavailable, match="no camera found"):
        await camera.start()
    assert not camera.active
