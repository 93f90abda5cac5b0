"""A local Gemini Live API: the real wire protocol over TLS on 127.0.0.1.

The unmodified google-genai SDK talks to it as it would to Google, so the appliance and
its tests run the real client stack with no internet and no API key. It is a server and
needs neither the SDK nor anything heavy at import time: the names below are loaded on
first use.

    async with Emulator(Scenario(replies=[Reply(pcm=...)])) as emu:
        client = genai.Client(api_key=emu.api_key, http_options=types.HttpOptions(
            base_url=emu.base_url, async_client_args={"ssl": client_context(emu.ca_file)}))

`add_arguments(parser)` / `run(args)` implement the `appliance emulator` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cli import add_arguments, run

if TYPE_CHECKING:
    from .recorder import Record, Recorder, Sent
    from .scenario import Fault, FaultKind, Reply, Scenario, ToolCallSpec
    from .server import DEFAULT_API_KEY, Emulator, ThreadedEmulator
    from .session import ConnectionInfo, Conversation, TranscriptEntry
    from .tls import client_context
    from .vad import VadConfig

_LAZY = {
    "Emulator": "server",
    "ThreadedEmulator": "server",
    "DEFAULT_API_KEY": "server",
    "Scenario": "scenario",
    "Reply": "scenario",
    "Fault": "scenario",
    "FaultKind": "scenario",
    "ToolCallSpec": "scenario",
    "Record": "recorder",
    "Recorder": "recorder",
    "Sent": "recorder",
    "ConnectionInfo": "session",
    "Conversation": "session",
    "TranscriptEntry": "session",
    "client_context": "tls",
    "VadConfig": "vad",
}

__all__ = [
    "DEFAULT_API_KEY",
    "ConnectionInfo",
    "Conversation",
    "Emulator",
    "Fault",
    "FaultKind",
    "Record",
    "Recorder",
    "Reply",
    "Scenario",
    "Sent",
    "ThreadedEmulator",
    "ToolCallSpec",
    "TranscriptEntry",
    "VadConfig",
    "add_arguments",
    "client_context",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
