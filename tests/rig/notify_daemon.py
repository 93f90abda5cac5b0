"""A stand-in daemon that drives `appliance.daemon.service` for real, for the sd_notify
tests (host) and the systemd tests (booted container), until `appliance run` can do both.

It loads the config like the daemon (exit 78 on a config error), logs through
`setup_logging` with structured fields and the API key registered as a secret, sends
READY/STATUS, pings the watchdog from its loop, and answers signals: SIGTERM stops
cleanly, SIGHUP reloads, SIGUSR1 hangs the loop (STATUS=hanging first) so a test can see
the watchdog pings stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time

from appliance import config
from appliance.daemon import service

log = logging.getLogger("appliance.testdaemon")


def main() -> int:
    service.setup_logging("debug")
    try:
        cfg = config.load()
        key = config.resolve_api_key(cfg)
    except config.ConfigError as exc:
        log.error("config error: %s", exc)
        return service.EX_CONFIG
    secret = key.get_secret_value() if key else None
    if secret:
        service.SECRETS.register(secret)
    asyncio.run(run(secret))
    return 0


async def run(secret: str | None) -> None:
    notifier = service.Notifier()
    stop = asyncio.Event()

    def hang() -> None:
        notifier.status("hanging")
        time.sleep(3600)

    service.install_signal_handlers(
        notifier, on_stop=stop.set, on_reload=lambda: log.info("reloaded")
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, hang)
    notifier.start_watchdog()
    notifier.ready(status="idle")
    log.info("state idle", extra=service.fields(state="idle", session="s-1", turn=0, key=secret))
    log.info("the key is %s", secret or "absent")  # the filter must hide it
    await stop.wait()
    notifier.status("stopped")
    log.info("stopped cleanly")


if __name__ == "__main__":
    sys.exit(main())
