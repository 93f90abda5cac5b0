"""Where the installed service finds its Gemini API key, seen from outside the service.

Inside the service systemd hands the key over as the credential `gemini-api-key`
(`$CREDENTIALS_DIRECTORY`, from `LoadCredential=` in appliance.service, which
deploy/install.sh points at /etc/appliance/gemini-api-key). `appliance check` and
`appliance doctor` run in a login shell, where that directory does not exist: looking only
at `config.find_api_key` they said "none found" on a freshly installed device. So outside
the service we ask systemd which file the unit loads the credential from (the unit file
and its drop-ins as a fallback) and look there first, in the service's own order.

The key file is root's (mode 0600): as another user we can still see that it is there and
not empty, and say so, without reading it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from appliance import config

UNIT = "appliance.service"
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"), Path("/lib/systemd/system"))


@dataclass(frozen=True, slots=True)
class KeyLocation:
    """Where the key is; `key` is None when it is there but this user cannot read it."""

    source: str
    """Safe to print: names the credential or file, never the key."""
    key: SecretStr | None
    unreadable: str = ""
    """Why `key` is None: `readable by root only (mode 0600)`, `cannot look at it: ...`."""

    def describe(self) -> str:
        if self.key is None:
            return f"{self.source}; {self.unreadable}, so not read here"
        return self.source


def credential_file(
    unit: str = UNIT, *, unit_dirs: tuple[Path, ...] = UNIT_DIRS, systemctl: str = "systemctl"
) -> Path | None:
    """The file `unit` loads the credential `gemini-api-key` from, or None.

    systemd's view first: the value it reports, else the unit file and drop-ins it
    loaded (systemd 252's `systemctl show` says `LoadCredential=[unprintable]`); the unit
    files on disk when systemd is not running here (a chroot, a container being built)."""
    lines = _from_systemctl(unit, systemctl)
    if lines is None:
        lines = _from_unit_files(unit, unit_dirs)
    found: Path | None = None
    for line in lines:
        name, _, path = line.partition(":")
        if name.strip() == config.API_KEY_CREDENTIAL:
            found = Path(path.strip()) if path.strip() else None  # the last setting wins
    return found if found is not None and found.is_absolute() else None


def systemctl_show(
    unit: str, props: tuple[str, ...], systemctl: str = "systemctl"
) -> subprocess.CompletedProcess[str] | None:
    """`systemctl show --property=...` of `unit`, or None where systemd does not run (or
    the command cannot be run). Shared with `appliance doctor`."""
    if not Path("/run/systemd/system").is_dir():
        return None
    try:
        return subprocess.run(
            [systemctl, "show", *(f"--property={p}" for p in props), unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _from_systemctl(unit: str, systemctl: str) -> list[str] | None:
    out = systemctl_show(
        unit, ("LoadState", "LoadCredential", "FragmentPath", "DropInPaths"), systemctl
    )
    if out is None:
        return None
    props: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props.setdefault(key, []).append(value)
    if props.get("LoadState") != ["loaded"]:
        return None if out.returncode else []
    loaded = [v for v in props.get("LoadCredential", []) if ":" in v]  # 252: [unprintable]
    if loaded:
        return loaded
    files = [Path(p) for p in props.get("FragmentPath", []) if p]
    files += [Path(p) for v in props.get("DropInPaths", []) for p in v.split() if p]
    return _credentials_in(files)


def _from_unit_files(unit: str, unit_dirs: tuple[Path, ...]) -> list[str]:
    """`LoadCredential=` values of the first unit file found and its drop-ins."""
    files: list[Path] = []
    for directory in unit_dirs:
        if (directory / unit).is_file():
            files.append(directory / unit)
            break
    for directory in unit_dirs:
        files.extend(sorted((directory / f"{unit}.d").glob("*.conf")))
    return _credentials_in(files)


def _credentials_in(files: list[Path]) -> list[str]:
    """`LoadCredential=` values in these unit files, in order (an empty one resets the
    list, as in systemd)."""
    values: list[str] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError:
            continue
        for raw in text.splitlines():
            key, sep, value = raw.strip().partition("=")
            if sep and key.strip() == "LoadCredential":
                if value.strip():
                    values.append(value.strip())
                else:
                    values.clear()
    return values


def locate(
    cfg: config.Config,
    environ: Mapping[str, str] | None = None,
    *,
    service_credential: Path | bool | None = True,
) -> KeyLocation | None:
    """Find the key the service would use; None when there is none anywhere.

    `service_credential`: True asks systemd (see `credential_file`), a Path is taken as
    the credential's file, None/False skips it. Raises config.ConfigError for a key
    that is there but unusable (a placeholder, an unreadable `api_key_file`)."""
    env = os.environ if environ is None else environ
    if env.get("CREDENTIALS_DIRECTORY"):  # inside the service: its own view is the truth
        found = config.find_api_key(cfg, env)
        return KeyLocation(found[1], found[0]) if found else None
    file = credential_file() if service_credential is True else service_credential or None
    if isinstance(file, Path):
        location = _credential_at(file)
        if location is not None:
            return location
    found = config.find_api_key(cfg, env)
    if found is None:
        return None
    key, source = found
    if source.startswith("environment") and file is not None:
        source += " (this shell's: the service does not see it)"
    return KeyLocation(source, key)


def _credential_at(file: Path) -> KeyLocation | None:
    source = f"systemd credential {config.API_KEY_CREDENTIAL}, from {file} (LoadCredential=)"
    try:
        info = file.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return KeyLocation(source, None, f"cannot look at it: {exc.strerror}")
    if info.st_size == 0:
        return None
    if not os.access(file, os.R_OK):
        owner = "root" if info.st_uid == 0 else f"uid {info.st_uid}"
        return KeyLocation(
            source,
            None,
            f"readable by {owner} only (mode {info.st_mode & 0o777:04o})",
        )
    key = config._read_key(file)  # raises ConfigError for a placeholder
    return KeyLocation(source, key) if key is not None else None
