"""What a tool is, and what a source of tools is.

Each tool is a declaration the Live session is set up with (JSON schema) and a handler
that returns the JSON answer. A source (the built-in functions, timers, an MCP server)
lists its tools when a conversation opens, so a source that is down at one session can
be back for the next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class ToolContext(Protocol):
    """What tools may touch."""

    def get_volume(self) -> int: ...

    def set_volume(self, percent: int) -> int: ...

    def end_conversation(self) -> None: ...

    async def look(self) -> bytes | None:
        """A JPEG from the camera, or None when there is none."""
        ...


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    """A declaration, its handler, and how its answer reaches the conversation.

    `declaration["behavior"]`: BLOCKING when the model needs the answer to go on (the
    time, the volume asked for); NON_BLOCKING when it can keep talking meanwhile (models
    without asynchronous calls treat every call as blocking). `scheduling`, for
    NON_BLOCKING calls: SILENT (only added to the model's context: "done" needs no
    words), WHEN_IDLE (mentioned when the model is free), INTERRUPT (said now).
    """

    declaration: dict[str, Any]
    handler: Handler
    scheduling: str | None = None


class ToolSource(Protocol):
    """Somewhere tools come from. `tools()` is called as each conversation opens; it
    should answer quickly (the toolbox bounds the wait) and raise when the source is
    unreachable: the conversation then goes on without its tools.

    Optional hooks: `async release()`, called when a conversation ends (an MCP server's
    connection closes); `prepare()` at service start and `async close()` at its end (a
    stdio MCP server's process is kept between conversations)."""

    name: str

    async def tools(self) -> list[Tool]: ...
