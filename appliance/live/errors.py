"""Telling fatal Live API failures from passing ones, in words a user can act on.

Retrying a rejected key or an unknown model only fills the journal and hammers the
service; retrying a dropped connection or a 1011 is exactly right. Everything the SDK
and websockets can raise while connecting or receiving goes through `classify`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from appliance.live.models import DEFAULT_MODEL


class LiveError(Exception):
    """A Live session failure; `fatal` says whether retrying can help."""

    fatal = False

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class LiveFatalError(LiveError):
    """Retrying will not help until the user changes something (key, model, endpoint)."""

    fatal = True


class LiveUnavailableError(LiveError):
    """The service could not be reached or kept; a later attempt may work."""


KEY_HELP = (
    "put a valid Gemini API key in /etc/appliance/gemini-api-key (or GEMINI_API_KEY) "
    "and restart the appliance"
)


def classify(exc: BaseException, *, model: str) -> LiveError:
    """Map an exception from connect/send/receive to a fatal or passing LiveError."""
    # Imported here: this module is imported at start-up, the SDK only when a session is.
    from google.genai import errors as genai_errors

    if isinstance(exc, LiveError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return _from_close(exc.code, _reason(exc), model)
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd
        if frame is None:
            return LiveUnavailableError("the connection to the Live API dropped", 1006)
        return _from_close(frame.code, frame.reason, model)
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return LiveFatalError(f"the Live API refused the API key (HTTP {status}): {KEY_HELP}")
        if status == 404:
            return LiveFatalError(
                "the Live API endpoint was not found (HTTP 404): check [live] endpoint and "
                "api_version in config.toml"
            )
        return LiveUnavailableError(f"the Live API answered HTTP {status} to the handshake")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LiveUnavailableError(
            f"TLS certificate check failed ({exc.verify_message}); if the clock is not set "
            "yet this passes once time is synced, otherwise check [live] endpoint/ca_file"
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return LiveUnavailableError("the Live API did not answer in time")
    if isinstance(exc, OSError):
        return LiveUnavailableError(f"cannot reach the Live API: {exc.strerror or exc}")
    return LiveUnavailableError(f"Live session failed: {type(exc).__name__}: {exc}")


def _reason(exc: Any) -> str:
    """The close reason the SDK put in an APIError's details."""
    details = exc.details
    if isinstance(details, dict):
        return str(details.get("message") or details)
    return str(details or exc.message or "")


def _from_close(code: int | None, reason: str, model: str) -> LiveError:
    reason = reason or "no reason given"
    if code == 1007:
        if "key" in reason.lower():
            return LiveFatalError(f"the Live API rejected the API key ({reason}): {KEY_HELP}", code)
        return LiveFatalError(
            f"the Live API rejected what the appliance sent (1007: {reason}); this is a bug "
            "or an incompatible model: try another [live] model",
            code,
        )
    if code == 1008:
        return LiveFatalError(
            f"the Live API does not serve model {model!r} (1008: {reason}); it may have been "
            f"retired (previews are, with little notice): set [live] model in "
            f"/etc/appliance/config.toml to a current Live model, e.g. {DEFAULT_MODEL!r}, "
            "or remove the key for the default",
            code,
        )
    if code in (1000, 1001):
        return LiveUnavailableError(f"the Live API closed the session ({code}: {reason})", code)
    return LiveUnavailableError(f"the Live API connection ended ({code}: {reason})", code)
