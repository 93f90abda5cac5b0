"""The device's own functions: volume, time, stop, look.

Handlers get what they need through `ToolContext`, a small interface the daemon
implements, so they can be tested without audio or a camera.
"""

from __future__ import annotations

import datetime
from typing import Any

from appliance.tools.base import Tool, ToolContext


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


class BuiltinTools:
    """The built-in functions as a tool source for the `Toolbox`."""

    name = "built-in"

    def __init__(self, camera_on_request: bool) -> None:
        self.camera_on_request = camera_on_request

    async def tools(self) -> list[Tool]:
        return available(self.camera_on_request)
