"""A signal's hook that fails is logged by name, once; asyncio never has to say "Task
exception was never retrieved" (seen at exit after a SIGHUP with a broken config)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

import pytest

from appliance.daemon import service


class Notes:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def reloading(self) -> bool:
        self.sent.append("RELOADING=1")
        return True

    def ready(self) -> bool:
        self.sent.append("READY=1")
        return True

    def stopping(self) -> bool:
        return True


async def test_a_failing_reload_hook_is_logged_and_ready_follows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_reload() -> None:
        raise RuntimeError("the new pin is taken")

    loop = asyncio.get_running_loop()
    unretrieved: list[object] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    notes = Notes()
    service.install_signal_handlers(notes, on_stop=lambda: None, on_reload=on_reload)  # type: ignore[arg-type]
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if "READY=1" in notes.sent:
                break
        gc.collect()
        await asyncio.sleep(0)
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    assert notes.sent == ["RELOADING=1", "READY=1"]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1 and "on_reload failed" in failed[0].getMessage()
    assert "the new pin is taken" in caplog.text
    assert unretrieved == []
