"""A config reload (SIGHUP): read the file again, then change what the new one changes.

`app.py` builds the parts once; this is where a running daemon takes a new config
without a restart: the state machine's policy, the budget, the earcons, the log level,
the hardware and the tool sources when their sections changed, the hands-free parts.
A file that does not load is reported and the running config kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance import config as config_mod
from appliance.audio.earcons import Earcons
from appliance.config import Config
from appliance.daemon import state
from appliance.daemon.cost import Budget
from appliance.daemon.inbox import Call
from appliance.tools.setup import make_toolbox
from appliance.voice.hands_free import wants_gate

if TYPE_CHECKING:
    from appliance.daemon.app import Appliance

log = logging.getLogger("appliance")


async def reload_config(app: Appliance) -> None:
    """Read the config again; a good one is applied on the loop, in order."""
    path = app.config_path
    try:
        new = config_mod.load(path)
    except config_mod.ConfigError as exc:
        log.error("config not reloaded, keeping the running one: %s", exc)
        return
    except Exception as exc:  # whatever the file does, the running config stays
        log.error("config not reloaded, keeping the running one: %s: %s", type(exc).__name__, exc)
        return
    app.post(Call(lambda: apply_config(app, new)))


async def apply_config(app: Appliance, new: Config) -> None:
    """Make `new` the running config: each part that depends on a changed section."""
    old, app.config = app.config, new
    app.machine.policy = state.Policy.from_config(new)
    app.handles.remember_s = new.behaviour.remember_s
    app.budget = Budget(new.cost)
    app.earcons = Earcons(new.audio.earcons)
    logging.getLogger().setLevel(new.logging.level.upper())
    if (old.button, old.leds, old.camera) != (new.button, new.leds, new.camera):
        app.close_hardware()
        if app.camera is not None:
            await app.camera.close()
        app.open_hardware()
    if old.mcp != new.mcp:
        replaced, app.toolbox = (
            app.toolbox,
            make_toolbox(new, camera_present=app.camera is not None, timers=app.timers),
        )
        await replaced.close()
        app.toolbox.prepare()
    if old.audio != new.audio:
        log.warning("[audio] changes take effect after `systemctl restart appliance`")
    app.hands_free.reload(new)
    if app.mic is not None and wants_gate(old) != wants_gate(new):
        app.mic.gate = app.hands_free.make_gate()
    log.info("config reloaded from %s", app.config_path or config_mod.DEFAULT_PATH)
    if app.machine.state in ("error", "offline"):
        await app.feed(state.Reset())
