"""The service's own state: systemd's view, and `appliance status` when it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.doctor.result import Result, failed, passed, skipped

UNIT = "appliance.service"
JOURNAL = "journalctl -u appliance -n 50"

Shower = Callable[[str, tuple[str, ...]], dict[str, str] | None]
"""(unit, properties) -> `systemctl show` values, or None when systemd is not running."""
StatusReader = Callable[[Path], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the other checks need to know: a busy device or pin may be the service's."""

    active: bool
    user: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    """The unit's `Environment=` (e.g. an `ALSA_CONFIG_PATH` the devices are defined in)."""


def systemctl_show(unit: str, props: tuple[str, ...]) -> dict[str, str] | None:
    from appliance.service_key import systemctl_show as show

    out = show(unit, props)
    if out is None or out.returncode:
        return None
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def control_status(socket: Path) -> dict[str, Any]:
    import os

    from appliance.daemon.control import ControlClient

    if socket.exists() and not os.access(socket, os.R_OK | os.W_OK):
        raise PermissionError(socket)

    return ControlClient(socket, timeout_s=5).status()


def check_service(
    socket: Path,
    show: Shower = systemctl_show,
    status: StatusReader = control_status,
    unit: str = UNIT,
) -> tuple[Result, ServiceInfo]:
    """`systemctl show` for the unit; when it is active, its status over the socket."""
    props = show(
        unit,
        ("LoadState", "ActiveState", "SubState", "Result", "ExecMainStatus", "User", "Environment"),
    )
    if props is None:
        return skipped("service", "systemd is not running here", "run it on the device"), (
            ServiceInfo(active=False)
        )
    user = props.get("User") or None
    environment = _environment(props.get("Environment", ""))
    if props.get("LoadState") != "loaded":
        return skipped(
            "service",
            f"{unit} is not installed ({props.get('LoadState', '?')})",
            "sudo deploy/install.sh installs it",
        ), ServiceInfo(active=False)
    active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
    if active != "active":
        why = ""
        if props.get("ExecMainStatus") == "78":
            why = " (exit 78: a config error; `appliance check` says which)"
        elif props.get("Result") not in (None, "", "success"):
            why = f" (result {props['Result']}, exit status {props.get('ExecMainStatus')})"
        return failed(
            "service",
            f"{unit} is {active} ({sub}){why}",
            f"sudo systemctl start appliance; what happened: {JOURNAL}",
        ), ServiceInfo(active=False, user=user, environment=environment)
    info = ServiceInfo(active=True, user=user, environment=environment)
    try:
        state = status(socket)
    except PermissionError:
        return passed(
            "service",
            f"{unit} is active ({sub}); its status was not asked: {socket} is for root and "
            "the group appliance",
        ), info
    except Exception as exc:  # ControlError, OSError: the socket does not answer
        return failed(
            "service",
            f"{unit} is active ({sub}) but its control socket {socket} does not answer ({exc})",
            f"sudo systemctl restart appliance; {JOURNAL}",
        ), info
    error = state.get("last_error")
    summary = f"{unit} is active ({sub}); state {state.get('state')}"
    if error or state.get("state") == "error":
        return failed("service", f"{summary}, last error: {error}", f"see {JOURNAL}"), info
    return passed("service", f"{summary}, no error"), info


def _environment(value: str) -> dict[str, str]:
    """`Environment=A=1 "B=two words"` as systemctl shows it."""
    import shlex

    try:
        words = shlex.split(value)
    except ValueError:
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word)
