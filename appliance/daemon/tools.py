"""Functions the model may call, run on the device: volume, time, stop, look.

Each tool is a declaration the Live session is set up with (JSON schema) and a handler
that returns the JSON answer. Handlers get what they need through `ToolContext`, a small
interface the daemon implements, so they can be tested without audio or a camera.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


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


async def _get_volume(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"volume_percent": ctx.get_volume()}


async def _set_volume(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    if "percent" in args:
        target = int(args["percent"])
    elif "change" in args:
        target = ctx.get_volume() + int(args["change"])
    else:
        return {"error": "give `percent` (0-100) or `change` (e.g. +10 or -10)"}
    return {"volume_percent": ctx.set_volume(target)}


async def _local_time(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    now = datetime.datetime.now().astimezone()
    return {
        "iso": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
        "timezone": now.tzname() or "",
    }


async def _end_conversation(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.end_conversation()
    return {"result": "the conversation ends after this reply"}


async def _look(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    jpeg = await ctx.look()
    if jpeg is None:
        return {"error": "no camera is available"}
    # The frame goes to the model as a video frame of the session; this answer only
    # confirms it. (Function responses carry JSON, not images.)
    return {"result": "a camera frame was sent as video input", "jpeg_bytes": len(jpeg)}


_OBJECT = "OBJECT"

TOOLS: dict[str, Tool] = {
    "get_volume": Tool(
        {
            "name": "get_volume",
            "description": "The speaker volume in percent.",
            "behavior": "BLOCKING",
        },
        _get_volume,
    ),
    "set_volume": Tool(
        {
            "name": "set_volume",
            "description": "Set the speaker volume: an absolute percent, or a change.",
            "parameters": {
                "type": _OBJECT,
                "properties": {
                    "percent": {"type": "INTEGER", "description": "0 to 100"},
                    "change": {"type": "INTEGER", "description": "e.g. 10 or -10"},
                },
            },
            "behavior": "NON_BLOCKING",
        },
        _set_volume,
        scheduling="SILENT",
    ),
    "get_local_time": Tool(
        {
            "name": "get_local_time",
            "description": "The device's local date, time, weekday and time zone.",
            "behavior": "BLOCKING",
        },
        _local_time,
    ),
    "end_conversation": Tool(
        {
            "name": "end_conversation",
            "description": "Stop listening once this reply is spoken, when the user is done.",
            "behavior": "NON_BLOCKING",
        },
        _end_conversation,
        scheduling="SILENT",
    ),
    "look": Tool(
        {
            "name": "look",
            "description": "Take a photo with the device's camera to see what the user shows.",
            "behavior": "NON_BLOCKING",
        },
        _look,
        scheduling="WHEN_IDLE",
    ),
}


def available(camera_on_request: bool) -> list[Tool]:
    """The tools to declare; `look` only with a camera in `on_request` mode."""
    return [t for name, t in TOOLS.items() if name != "look" or camera_on_request]


def scheduling_of(name: str) -> str | None:
    """How the answer to a call of `name` is to be scheduled (None: BLOCKING, or unknown)."""
    tool = TOOLS.get(name)
    return tool.scheduling if tool is not None else None


async def run_call(
    ctx: ToolContext, name: str, args: dict[str, Any], declared: Collection[str] | None = None
) -> dict[str, Any]:
    """Run one call; errors become an `error` answer the model can speak about. A call of
    a function the session did not declare (`declared`; e.g. `look` with the camera in
    stream mode) is refused, not run."""
    tool = TOOLS.get(name)
    if tool is None or (declared is not None and name not in declared):
        return {"error": f"unknown function {name!r}"}
    try:
        return await tool.handler(ctx, args)
    except Exception as exc:  # a broken tool must not end the conversation
        log.exception("tool %s failed", name)
        return {"error": f"{type(exc).__name__}: {exc}"}
