"""Running under systemd: sd_notify, the watchdog, signals, and logging to journald.

The unit is `Type=notify` with `WatchdogSec=`: systemd waits for `READY=1` before it
calls the service started, shows `STATUS=` in `systemctl status`, and restarts the
service when `WATCHDOG=1` pings stop. The pings go through the daemon's inbox, so a
loop stuck in a blocking call, or an inbox no longer consumed, stops them and systemd
restarts a hung daemon.

Notifications go through systemd-python's `systemd.daemon.notify` (libsystemd's
`sd_notify`, which also handles abstract `@` sockets); without `NOTIFY_SOCKET` (a shell,
the tests, the demo) every call is a no-op.

Logging goes to journald with structured fields (`APPLIANCE_STATE=`,
`APPLIANCE_SESSION=`, `APPLIANCE_TURN=`) when systemd connected stderr to the journal
(`JOURNAL_STREAM`), and to stderr as readable lines otherwise. Every handler carries a
`SecretFilter`: a value registered with it (the API key) is replaced by `[REDACTED]` in
the message, its arguments, tracebacks and extra fields, before any handler sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

EX_CONFIG = 78
"""Exit status for a config error; the unit's `RestartPreventExitStatus=78` stops loops."""

REDACTED = "[REDACTED]"
FIELD_PREFIX = "APPLIANCE_"
_MIN_SECRET_LEN = 6
"""Shorter values would redact ordinary words; real API keys are ~40 characters."""


# --- sd_notify ------------------------------------------------------------------------


class Notifier:
    """Sends sd_notify messages to systemd; every method is a no-op outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.socket = env.get("NOTIFY_SOCKET") or None
        self.watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of `WatchdogSec=`, or None when there is no watchdog."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines as one datagram; False when not under systemd."""
        if not self.enabled:
            return False
        from systemd.daemon import notify  # libsystemd: small, only needed under systemd

        return bool(notify("\n".join(lines)))

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    async def run_watchdog(self, through: Relay | None = None) -> None:
        """Ping at half the watchdog interval for as long as the loop runs (a task).

        With `through`, each ping is handed to it (the daemon puts it in its inbox) and
        sent only when it is run there: a loop that still turns while its inbox is stuck
        (a handler waiting on a hung device) stops pinging, and systemd restarts it. One
        ping is in flight at a time, so a stuck inbox does not fill up with them."""
        interval = self.watchdog_interval_s
        if interval is None:
            return
        handled = True

        def ping() -> None:
            nonlocal handled
            handled = True
            self.watchdog()

        while True:
            if through is None:
                self.watchdog()
            elif handled:
                handled = False
                through(ping)
            await asyncio.sleep(interval)

    def start_watchdog(self, through: Relay | None = None) -> asyncio.Task[None] | None:
        """Start `run_watchdog` on the running loop; None when there is no watchdog."""
        if self.watchdog_interval_s is None:
            return None
        loop = asyncio.get_running_loop()
        return loop.create_task(self.run_watchdog(through), name="watchdog")


Relay = Callable[[Callable[[], None]], None]
"""Runs a callback where it proves something works (the daemon: through its inbox)."""


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """`WATCHDOG_USEC`, if it is meant for this process (`WATCHDOG_PID`, when set)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec if usec > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- signals --------------------------------------------------------------------------


Hook = Callable[[], object]
"""A callback; if it returns an awaitable, it is run as a task on the loop."""


def install_signal_handlers(
    notifier: Notifier,
    on_stop: Hook,
    on_reload: Hook | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> None:
    """SIGTERM/SIGINT: `STOPPING=1`, then `on_stop`. SIGHUP: `RELOADING=1`, `on_reload`,
    then `READY=1` again (systemd 252 wants READY=1 to end a reload)."""
    loop = loop or asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def call(hook: Hook, after: Callable[[], object] | None = None) -> None:
        result = hook()
        if inspect.isawaitable(result):

            async def wait() -> None:
                try:
                    await result
                except Exception:  # said here, or asyncio says "never retrieved" at exit
                    log.exception("%s failed", getattr(hook, "__name__", "a signal handler"))
                finally:
                    if after is not None:
                        after()

            task = loop.create_task(wait())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif after is not None:
            after()

    def stop() -> None:
        notifier.stopping()
        call(on_stop)

    def reload() -> None:
        notifier.reloading()
        assert on_reload is not None
        call(on_reload, after=notifier.ready)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


# --- logging --------------------------------------------------------------------------


class SecretFilter(logging.Filter):
    """Replaces registered secret values in everything a log record carries."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        for secret in secrets:
            self.register(secret)

    def register(self, secret: str) -> None:
        """Never log this value. Too-short values are refused (they'd hide plain words)."""
        secret = secret.strip()
        if len(secret) < _MIN_SECRET_LEN:
            raise ValueError("refusing to register a secret shorter than 6 characters")
        self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None  # journald would send the raw exception as EXCEPTION_INFO
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key.startswith(FIELD_PREFIX) and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


SECRETS = SecretFilter()
"""The process-wide filter `setup_logging` puts on every handler; `SECRETS.register(key)`."""


def fields(
    state: str | None = None, session: str | None = None, turn: int | None = None, **more: Any
) -> dict[str, str]:
    """`extra=` for a log call: `log.info("...", extra=fields(state="listening", turn=3))`."""
    out = {f"{FIELD_PREFIX}STATE": state, f"{FIELD_PREFIX}SESSION": session}
    out[f"{FIELD_PREFIX}TURN"] = None if turn is None else str(turn)
    out.update(
        {f"{FIELD_PREFIX}{k.upper()}": None if v is None else str(v) for k, v in more.items()}
    )
    return {k: v for k, v in out.items() if v is not None}


class ConsoleFormatter(logging.Formatter):
    """`12:00:01 INFO appliance.daemon: listening (state=listening turn=3)`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [
            f"{k[len(FIELD_PREFIX) :].lower()}={v}"
            for k, v in vars(record).items()
            if k.startswith(FIELD_PREFIX)
        ]
        if extra:
            first, _, rest = text.partition("\n")
            text = f"{first} ({' '.join(extra)})" + (f"\n{rest}" if rest else "")
        return text


def journal_connected(environ: Mapping[str, str] | None = None) -> bool:
    """True when stderr is the journal stream systemd set up (`JOURNAL_STREAM=dev:ino`).

    Checking the inode, as systemd documents, avoids logging to journald from a child
    process whose stderr was redirected elsewhere while the variable was inherited.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(value) and f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"


def setup_logging(
    level: str | int = "info",
    journal: bool | None = None,
    identifier: str = "appliance",
) -> logging.Handler:
    """Route the root logger to journald (under systemd) or stderr; returns the handler.

    `journal=None` decides from `JOURNAL_STREAM`. Calling again replaces the handler
    (a config reload may change the level).
    """
    use_journal = journal_connected() if journal is None else journal
    handler: logging.Handler
    if use_journal:
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ConsoleFormatter())
    handler.addFilter(SECRETS)
    handler.set_name("appliance")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "appliance"]:
        root.removeHandler(old)
        with contextlib.suppress(Exception):
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
