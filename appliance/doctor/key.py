"""The API key found: where the service will take it from (never its value)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance import config, service_key
from appliance.doctor.result import Result, failed, passed

Locator = Callable[[config.Config], service_key.KeyLocation | None]


def check_key(
    cfg: config.Config, locate: Locator = service_key.locate
) -> tuple[Result, service_key.KeyLocation | None]:
    """Where the key is; the location (with the key when readable) for the Live check."""
    try:
        found = locate(cfg)
    except config.ConfigError as exc:
        return failed(
            "api key",
            str(exc),
            "put the key from https://aistudio.google.com/apikey there, on one line",
        ), None
    if found is None:
        return failed(
            "api key",
            "none found (systemd credential gemini-api-key, [live] api_key_file, GEMINI_API_KEY)",
            'printf %s "$KEY" | sudo deploy/install.sh --key-stdin (stores it in '
            f"{Path('/etc/appliance/gemini-api-key')} for the service)",
        ), None
    return passed("api key", f"found: {found.describe()}"), found
