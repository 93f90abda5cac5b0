"""Config valid: what `appliance check` checks, for `check` and `doctor` alike."""

from __future__ import annotations

from pathlib import Path

from appliance import config
from appliance.doctor.result import Result, failed, passed, skipped


def problems_in(cfg: config.Config, path: Path | str, *, camera: bool) -> list[str]:
    """Problems a valid file can still have: GPIO claimed twice, and (`camera`) an
    enabled camera without picamera2. One line each, naming the file."""
    from appliance.hardware import pinmap

    problems = [f"{path}: {c}" for c in pinmap.conflicts(cfg)]
    if camera and cfg.camera.enabled:
        from appliance.hardware.camera import CameraUnavailable, import_picamera2

        try:
            import_picamera2()
        except CameraUnavailable as exc:
            problems.append(f"{path}: {exc}")
    return problems


def check_config(path: Path) -> tuple[Result, config.Config | None]:
    """Load and validate `path` (the camera has a check of its own)."""
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        if any("Permission denied" in p for p in exc.problems):
            return skipped(
                "config",
                f"{path} is not readable as {_user()}",
                "run `sudo appliance doctor`, or join the group appliance "
                "(`sudo usermod -aG appliance $USER`, then log in again)",
            ), None
        return failed(
            "config", "; ".join(str(exc).splitlines()), f"edit {path}; `appliance check` explains"
        ), None
    problems = problems_in(cfg, path, camera=False)
    if problems:
        return failed("config", "; ".join(problems), f"edit {path}"), None
    return passed("config", f"{path} is valid (board {cfg.board}, model {cfg.live.model})"), cfg


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        import os

        return f"uid {os.getuid()}"
