"""The optional camera: picamera2 frames as bounded JPEGs, only during a conversation.

Three small parts:
- `FrameSource`: something that takes one JPEG when asked. `Picamera2Source` is the real
  one; picamera2 (apt `python3-picamera2`, libcamera's bindings, Raspberry Pi OS only) is
  imported when the camera is enabled and not before, so nothing else pays for it.
- `bound_jpeg()`: guarantees the longest side is at most `max_size`, whatever the source
  delivered (re-encoding with Pillow, which picamera2 depends on, only if needed).
- `Camera`: the gate. The daemon calls `start()` when a conversation begins and `stop()`
  when it ends; frames exist only in between (`capture_frame()` raises `CameraInactive`
  otherwise, and a frame still being taken when `stop()` comes is thrown away). All
  frames, streamed or requested, share one rate limit of `max_fps`. Captures run in a
  worker thread so the asyncio loop never waits on the sensor or the JPEG encoder.

`on_active(True/False)` is called as the camera starts and stops, for the LED overlay:
the person in the room sees when the camera is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.config import CameraConfig

INSTALL_HINT = (
    "camera.enabled = true but picamera2 cannot be imported. On Raspberry Pi OS install "
    "it with `sudo apt install python3-picamera2` (pip cannot build its libcamera "
    "bindings); a virtualenv only sees it when created with --system-site-packages "
    "(`python3 -m venv --system-site-packages ...`). Or set camera.enabled = false."
)


class CameraUnavailable(RuntimeError):
    """The camera is enabled but cannot be used; the message says how to fix it."""


class CameraInactive(RuntimeError):
    """A frame was asked for outside a conversation: the camera is off then."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One JPEG, ready for the Live API (`image/jpeg`)."""

    jpeg: bytes
    width: int
    height: int
    at: float
    """Monotonic time it was delivered; frames are at least 1/max_fps apart."""

    mime_type = "image/jpeg"


class FrameSource(Protocol):
    """Takes JPEGs on request. Blocking calls: `Camera` runs them in a worker thread."""

    def start(self) -> None: ...

    def capture_jpeg(self) -> bytes: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


def import_picamera2() -> type:
    """`picamera2.Picamera2`, or CameraUnavailable with the install instructions."""
    try:
        from picamera2 import Picamera2
    except ImportError as exc:
        raise CameraUnavailable(f"{INSTALL_HINT} (import error: {exc})") from exc
    return Picamera2


def frame_size(sensor: tuple[int, int], max_size: int) -> tuple[int, int]:
    """The sensor's aspect ratio scaled so the longest side is `max_size` (even sizes,
    as the ISP wants them)."""
    width, height = sensor
    scale = min(1.0, max_size / max(width, height))
    return (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))


class Picamera2Source:
    """The Raspberry Pi camera through picamera2, opened on first `start()`.

    `picamera2_class` replaces `picamera2.Picamera2` (the test rig's stand-in)."""

    def __init__(self, config: CameraConfig, picamera2_class: type | None = None) -> None:
        self._config = config
        self._class = picamera2_class or import_picamera2()
        self._cam: Any = None

    def start(self) -> None:
        if self._cam is None:
            try:
                cam = self._class()
            except (IndexError, RuntimeError) as exc:  # picamera2: no camera attached
                raise CameraUnavailable(
                    f"no camera found ({exc}): check the ribbon cable and that "
                    "`rpicam-hello --list-cameras` lists it"
                ) from exc
            size = frame_size(tuple(cam.sensor_resolution), self._config.max_size)
            cam.configure(
                cam.create_video_configuration(
                    main={"size": size, "format": "RGB888"}, buffer_count=2
                )
            )
            cam.options["quality"] = self._config.jpeg_quality
            self._cam = cam
        self._cam.start()

    def capture_jpeg(self) -> bytes:
        buf = io.BytesIO()
        self._cam.capture_file(buf, format="jpeg")
        return buf.getvalue()

    def stop(self) -> None:
        if self._cam is not None:
            self._cam.stop()

    def close(self) -> None:
        if self._cam is not None:
            self._cam.close()
            self._cam = None


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding it."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 9 <= len(data):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    raise ValueError("corrupt JPEG: no frame header")


def bound_jpeg(data: bytes, max_size: int, quality: int) -> tuple[bytes, int, int]:
    """The JPEG with its longest side at most `max_size`, and its size."""
    width, height = jpeg_size(data)
    if max(width, height) <= max_size:
        return data, width, height
    from PIL import Image  # a dependency of picamera2; only needed when shrinking

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((max_size, max_size))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality)
        return out.getvalue(), image.width, image.height


class Camera:
    """Rate-limited, size-bounded JPEG frames, only between `start()` and `stop()`."""

    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        *,
        on_active: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._source = source
        self._on_active = on_active
        self._clock = clock
        self._interval = 1.0 / config.max_fps
        self._lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._active = False
        self._last: float | None = None

    @property
    def mode(self) -> str:
        """`stream` (the daemon sends `frames()`) or `on_request` (`capture_frame()`)."""
        return self._config.mode

    @property
    def active(self) -> bool:
        return self._active

    async def start(self) -> None:
        """A conversation began: switch the camera on."""
        if self._active:
            return
        async with self._lock:
            await asyncio.to_thread(self._source.start)
            self._active = True
            self._stopped.clear()
        if self._on_active is not None:
            self._on_active(True)

    async def stop(self) -> None:
        """The conversation ended: no frame is taken or delivered after this returns."""
        if not self._active:
            return
        self._active = False
        self._stopped.set()  # wakes a capture waiting for its turn
        async with self._lock:  # waits for a capture in progress (its frame is dropped)
            await asyncio.to_thread(self._source.stop)
        if self._on_active is not None:
            self._on_active(False)

    async def capture_frame(self) -> Frame:
        """One fresh frame, waiting for the rate limit if needed.

        Raises CameraInactive outside a conversation (or if it ends meanwhile)."""
        async with self._lock:
            if not self._active:
                raise CameraInactive("the camera is only on during a conversation")
            await self._wait_turn()
            if not self._active:
                raise CameraInactive("the conversation ended")
            jpeg, width, height = await asyncio.to_thread(self._take)
            if not self._active:
                raise CameraInactive("the conversation ended")
            self._last = self._clock()
            return Frame(jpeg, width, height, self._last)

    async def _wait_turn(self) -> None:
        """Sleep until the rate limit allows the next frame; `stop()` cuts it short."""
        while self._active and self._last is not None:
            delay = self._last + self._interval - self._clock()
            if delay <= 0:
                return
            # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation that
            # comes as the event is set (the frame loop then went on after its stop).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()

    def _take(self) -> tuple[bytes, int, int]:
        raw = self._source.capture_jpeg()
        return bound_jpeg(raw, self._config.max_size, self._config.jpeg_quality)

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames at up to `max_fps` until `stop()` (stream mode)."""
        while self._active:
            try:
                yield await self.capture_frame()
            except CameraInactive:
                return

    async def close(self) -> None:
        """Stop, and release the camera."""
        await self.stop()
        await asyncio.to_thread(self._source.close)


def open_camera(
    config: CameraConfig,
    *,
    on_active: Callable[[bool], None] | None = None,
    picamera2_class: type | None = None,
) -> Camera | None:
    """The camera `[camera]` describes, or None when disabled.

    Raises CameraUnavailable at once (at service start, not mid-conversation) when it is
    enabled but picamera2 is missing."""
    if not config.enabled:
        return None
    return Camera(config, Picamera2Source(config, picamera2_class), on_active=on_active)
