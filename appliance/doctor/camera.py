"""Camera present when enabled: picamera2 imports and libcamera sees a camera."""

from __future__ import annotations

from collections.abc import Callable

from appliance.config import CameraConfig
from appliance.doctor.result import Result, failed, passed

CameraLister = Callable[[], list[dict[str, object]]]


def list_cameras() -> list[dict[str, object]]:
    """picamera2's `global_camera_info()`; raises CameraUnavailable without picamera2."""
    from appliance.hardware.camera import import_picamera2

    picamera2 = import_picamera2()
    return list(picamera2.global_camera_info())  # type: ignore[attr-defined]


def check_camera(cfg: CameraConfig, cameras: CameraLister = list_cameras) -> Result:
    if not cfg.enabled:
        return passed("camera", "disabled in config (camera.enabled = false)")
    from appliance.hardware.camera import CameraUnavailable

    try:
        found = cameras()
    except CameraUnavailable as exc:
        return failed("camera", "picamera2 cannot be imported", str(exc))
    except Exception as exc:  # libcamera failing to start
        return failed(
            "camera",
            f"libcamera cannot list cameras ({exc})",
            "check `rpicam-hello --list-cameras` and the kernel log (`dmesg`)",
        )
    if not found:
        return failed(
            "camera",
            "camera.enabled = true but no camera is connected",
            "check the ribbon cable (power off first) and `rpicam-hello "
            "--list-cameras`; or set camera.enabled = false",
        )
    names = ", ".join(str(c.get("Model", "?")) for c in found)
    return passed("camera", f"{len(found)} found: {names} ({cfg.mode})")
