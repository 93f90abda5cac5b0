"""The state directory is writable by the service (volume, resumption handle, the day's cost)."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Mapping
from pathlib import Path

from appliance.doctor.result import Result, failed, passed, skipped

DEFAULT = Path("/var/lib/appliance")


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the daemon keeps its state (the same rule as `Appliance`)."""
    env = os.environ if environ is None else environ
    return Path(env.get("STATE_DIRECTORY", "").split(":")[0] or DEFAULT)


def check_state_dir(
    path: Path, service_user: str | None, *, euid: int | None = None, installed: bool = True
) -> Result:
    """As its owner: write a file there. As root: it belongs to the service's user and
    the owner may write. As anyone else: skipped, it cannot be told from here."""
    euid = os.geteuid() if euid is None else euid
    try:
        info = path.stat()
    except FileNotFoundError:
        if installed and service_user:
            return passed(
                "state dir",
                f"{path} does not exist yet; systemd creates it "
                "(StateDirectory=) when the service starts",
            )
        return failed(
            "state dir",
            f"{path} does not exist",
            f"sudo install -d -m 0750 -o appliance -g appliance {path}",
        )
    except PermissionError:
        return skipped(
            "state dir",
            f"cannot look into {path.parent} as uid {euid}",
            "run `sudo appliance doctor` to include it",
        )
    if not path.is_dir():
        return failed("state dir", f"{path} is not a directory", f"remove it: sudo rm {path}")
    if euid == info.st_uid:
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
        except OSError as exc:
            return failed(
                "state dir", f"cannot write in {path}: {exc.strerror}", f"chmod u+w {path}"
            )
        return passed("state dir", f"{path} is writable")
    if euid != 0:
        return skipped(
            "state dir",
            f"{path} belongs to uid {info.st_uid}, not to you",
            "run `sudo appliance doctor` to include it",
        )
    owner = _name(info.st_uid)
    mode = f"{info.st_mode & 0o777:04o}"
    if service_user and owner != service_user:
        return failed(
            "state dir",
            f"{path} belongs to {owner}, the service runs as {service_user}",
            f"sudo chown -R {service_user}: {path}",
        )
    if not info.st_mode & 0o200:
        return failed(
            "state dir",
            f"{path} (mode {mode}) is not writable by its owner",
            f"sudo chmod u+w {path}",
        )
    return passed("state dir", f"{path} belongs to {owner}, mode {mode}")


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
