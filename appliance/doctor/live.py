"""The key accepted and the model known: one short connect with the real SDK.

The appliance's own `LiveClient` does it (the SDK, the setup message the daemon sends,
`errors.classify`), with one attempt and no retry, and closes after `setupComplete`. It
costs no tokens: nothing is sent after setup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import SecretStr

from appliance.config import LiveConfig
from appliance.doctor.result import Result, failed, passed

Connector = Callable[[LiveConfig, SecretStr], Awaitable[None]]


async def connect_once(cfg: LiveConfig, key: SecretStr) -> None:
    """Open and close one Live session; raises LiveError (classified) on failure."""
    from appliance.live.client import LiveClient

    client = LiveClient(cfg, key, connect_attempts=1)
    try:
        await client.connect()
    finally:
        await client.close()


def check_live(
    cfg: LiveConfig, key: SecretStr, key_source: str, connect: Connector = connect_once
) -> Result:
    from appliance.live.errors import KEY_HELP, LiveError

    t0 = time.monotonic()
    try:
        asyncio.run(_awaited(connect(cfg, key)))
    except LiveError as exc:
        message = exc.message.replace(f": {KEY_HELP}", "").replace("gave up after 1 attempts: ", "")
        low = message.lower()
        if "api key" in low:
            fix = (
                f"the key in {key_source} is not accepted: put a valid key from "
                "https://aistudio.google.com/apikey there (sudo deploy/install.sh --key-stdin) "
                "and restart the appliance"
            )
        elif exc.code == 1008 or "model" in low:
            fix = "set [live] model to a current Live model (or remove it for the default)"
        else:
            fix = "see the dns, tls and endpoint checks; a passing failure may pass again"
        return failed("live", message, fix)
    took = time.monotonic() - t0
    return passed("live", f"key accepted, model {cfg.model} served (setupComplete in {took:.1f} s)")


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable
