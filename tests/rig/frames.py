"""A camera without a camera: a stand-in for `picamera2.Picamera2` that makes real JPEGs.

It implements the part of picamera2's interface the appliance uses (`sensor_resolution`,
`create_video_configuration`, `configure`, `options["quality"]`, `start`, `stop`,
`close`, `capture_file(file, format="jpeg")`) and draws each frame with Pillow: a
gradient, a frame number and a border, encoded at the configured size and quality. So
`Picamera2Source` runs its real code, and tests check real JPEG bytes.

Like the real camera, it refuses to capture when not started; unlike it, it records
every capture (`captures`) so tests can count frames and see when they were taken.
`fake_picamera2(...)` makes a class with its own sensor, behaviour and record.
"""

from __future__ import annotations

import io
import time
from typing import Any, BinaryIO, ClassVar

from PIL import Image, ImageDraw


class FakePicamera2:
    """picamera2.Picamera2's interface, drawing synthetic frames."""

    sensor_resolution: ClassVar[tuple[int, int]] = (4608, 2592)  # Camera Module 3
    ignore_size: ClassVar[bool] = False
    """True: deliver full-sensor frames whatever was configured (a misbehaving source)."""
    fail_open: ClassVar[bool] = False
    """True: the constructor fails as picamera2 does with no camera attached."""
    captures: ClassVar[list[float]]
    """Monotonic times of every capture made by instances of this class."""
    instances: ClassVar[list[FakePicamera2]]

    def __init__(self, camera_num: int = 0) -> None:
        if self.fail_open:
            raise IndexError("list index out of range")  # what picamera2 raises
        self.camera_num = camera_num
        self.options: dict[str, Any] = {}
        self.config: dict[str, Any] | None = None
        self.started = False
        self.closed = False
        self.instances.append(self)

    def create_video_configuration(
        self, main: dict[str, Any] | None = None, buffer_count: int = 6, **kwargs: Any
    ) -> dict[str, Any]:
        main = {"size": (1280, 720), "format": "XBGR8888", **(main or {})}
        return {"use_case": "video", "main": main, "buffer_count": buffer_count, **kwargs}

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        self.closed = True

    def capture_file(
        self, file_output: BinaryIO, name: str = "main", format: str | None = None
    ) -> None:
        if not self.started:
            raise RuntimeError("capture_file() on a camera that is not started")
        assert self.config is not None
        size = self.sensor_resolution if self.ignore_size else tuple(self.config["main"]["size"])
        self.captures.append(time.monotonic())
        image = draw_frame((int(size[0]), int(size[1])), len(self.captures))
        image.save(file_output, format=(format or "jpeg").upper().replace("JPG", "JPEG"),
                   quality=self.options.get("quality", 90))  # fmt: skip


def draw_frame(size: tuple[int, int], number: int) -> Image.Image:
    """A recognisable synthetic picture: gradient, border, frame number."""
    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 0, 0), width=4)
    draw.text((width // 10, height // 10), f"frame {number}", fill=(255, 255, 0))
    return image


def fake_picamera2(
    *,
    sensor: tuple[int, int] = (4608, 2592),
    ignore_size: bool = False,
    fail_open: bool = False,
) -> type[FakePicamera2]:
    """A FakePicamera2 class of its own (own record of captures and instances)."""
    return type(
        "FakePicamera2",
        (FakePicamera2,),
        {
            "sensor_resolution": sensor,
            "ignore_size": ignore_size,
            "fail_open": fail_open,
            "captures": [],
            "instances": [],
        },
    )


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """Decode a JPEG fully with Pillow (proves it is a valid image) and return its size."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        image.load()
        return image.size
