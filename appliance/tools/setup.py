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
    """The built-in functions (`look` only with a camera in `on_request` mode), and the
    timers when they are on."""
    camera_on_request = camera_present and config.camera.mode == "on_request"
    sources: list[ToolSource] = [BuiltinTools(camera_on_request)]
    if timers is not None:
        from appliance.tools.timers import TimerTools

        sources.append(TimerTools(timers))
    return Toolbox(sources)
