"""Which tool sources this appliance has, from its config: the one place a new source is
added (app.py only asks for the toolbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.tools.base import ToolSource
from appliance.tools.builtin import BuiltinTools
from appliance.tools.toolbox import Toolbox

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.timers.keeper import TimerKeeper


def make_toolbox(
    config: Config, *, camera_present: bool, timers: TimerKeeper | None = None
) -> Toolbox:
    """The built-in functions (`look` only with a camera in `on_request` mode), the
    timers when they are on, and each `[[mcp.servers]]` entry."""
    camera_on_request = camera_present and config.camera.mode == "on_request"
    sources: list[ToolSource] = [BuiltinTools(camera_on_request)]
    if timers is not None:
        from appliance.tools.timers import TimerTools

        sources.append(TimerTools(timers))
    sources += _mcp_sources(config)
    return Toolbox(sources)


def _mcp_sources(config: Config) -> list[ToolSource]:
    """MCP servers; the client library is imported (in the background, by the toolbox's
    `prepare()`) only when there are some."""
    if not config.mcp.servers:
        return []
    from appliance.tools.mcp.source import McpSource

    return [McpSource(server) for server in config.mcp.servers]
