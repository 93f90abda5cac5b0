"""Run the checks in order, print one line each, and return the exit status.

Order matters twice: the config comes first (nothing else can be checked without it),
and the service's state before the devices and pins (a busy device is expected while the
service holds it: then it is skipped with how to test it, not failed).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TextIO

from appliance.doctor.result import Result, Status, exit_code, skipped

Check = Callable[[], Result]


@dataclass
class Options:
    config_path: Path
    audio_test: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)


def run_doctor(options: Options) -> int:
    """All the checks; one line each on `options.out`; the exit status (see result.py)."""
    # Log records of the parts it uses (the Live client's error line) are not its output:
    # each check says what happened in its own line.
    logging.getLogger().addHandler(logging.NullHandler())
    results: list[Result] = []

    def say(result: Result) -> Result:
        results.append(result)
        print(result.line(), file=options.out, flush=True)
        return result

    def guarded(name: str, check: Check) -> Result:
        """A check that raises is a failure of that check, not of the doctor."""
        try:
            return say(check())
        except Exception as exc:
            return say(
                Result(
                    name,
                    Status.FAIL,
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "please report this",
                )
            )

    from appliance.doctor.config_check import check_config

    result, cfg = check_config(options.config_path)
    say(result)
    if cfg is None:
        say(skipped("the rest", "needs a valid, readable config"))
        return exit_code(results)

    from appliance.doctor.key import check_key

    result, key = check_key(cfg)
    say(result)

    from appliance.daemon.control import socket_path
    from appliance.doctor.service import check_service

    result, service = check_service(socket_path(cfg.control))
    alsa = service.environment.get("ALSA_CONFIG_PATH")
    if alsa and os.environ.get("ALSA_CONFIG_PATH") != alsa:
        # The devices are opened as the service opens them: with its ALSA config.
        os.environ["ALSA_CONFIG_PATH"] = alsa
        result = replace(
            result,
            message=f"{result.message}; its ALSA_CONFIG_PATH={alsa} is used for the device checks",
        )
    say(result)
    installed = result.status is not Status.SKIP or service.user is not None

    from appliance.doctor.state_dir import check_state_dir, state_dir

    guarded("state dir", lambda: check_state_dir(state_dir(), service.user, installed=installed))

    from appliance.doctor.clock import check_clock

    guarded("clock", check_clock)

    from appliance.doctor import audio

    for direction in ("capture", "playback"):
        guarded(
            direction,
            partial(audio.check_device, cfg.audio, direction, service_active=service.active),
        )
    if options.audio_test:
        print("  (recording 2 s: say something)", file=options.out, flush=True)
        guarded("recording", lambda: audio.record_test(cfg.audio))
        guarded("tone", lambda: audio.play_test(cfg.audio))

    from appliance.doctor.gpio import check_gpio

    guarded("gpio", lambda: check_gpio(cfg, service_active=service.active))

    from appliance.doctor.camera import check_camera

    guarded("camera", lambda: check_camera(cfg.camera))

    from appliance.doctor import network

    target = network.target(cfg.live)
    dns = guarded("dns", lambda: network.check_dns(target))
    tls = (
        guarded("tls", lambda: network.check_tls(target))
        if dns.status is Status.PASS
        else (say(skipped("tls", "needs dns")))
    )
    if tls.status is Status.PASS:
        guarded("endpoint", lambda: network.check_endpoint(target))
    else:
        say(skipped("endpoint", "needs tls"))

    from appliance.doctor.live import check_live

    if key is None:
        say(skipped("live", "no API key to try"))
    elif key.key is None:
        say(
            skipped(
                "live",
                f"the key file is {key.unreadable}",
                "run `sudo appliance doctor` to try it",
            )
        )
    elif tls.status is not Status.PASS:
        say(skipped("live", "needs tls"))
    else:
        guarded("live", partial(check_live, cfg.live, key.key, key.source))
    return exit_code(results)
