"""`appliance VERB ...`: the command line, for the service and for people over SSH.

Each verb imports what it needs only when it runs: on a Pi Zero 2 W, importing the
google-genai SDK alone takes seconds, and `appliance check` or `appliance status` should
answer at once. Exit codes follow sysexits.h, so systemd and scripts can tell a config
error (78, which the unit does not restart on) from a passing failure (`doctor` adds 77:
nothing failed but some checks were skipped, see appliance/doctor/result.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_CONFIG = 78


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one verb; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return EX_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `appliance status | head -1`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="A push-to-talk smart speaker for the Gemini Live API.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB")

    check = verbs.add_parser("check", help="validate a config file and show what it means")
    check.add_argument("path", nargs="?", type=Path, help="config file (default: the service's)")
    check.set_defaults(handler=_check)

    doctor = verbs.add_parser(
        "doctor", help="check config, key, audio, GPIO, camera, network, clock and service"
    )
    doctor.add_argument("--config", type=Path, help="config file (default: the service's)")
    doctor.add_argument(
        "--audio-test", action="store_true", help="also record 2 s (level in dBFS) and play a tone"
    )
    doctor.set_defaults(handler=_doctor)

    emulator = verbs.add_parser("emulator", help="run the local Live API emulator")
    from appliance.live import emulator as emulator_cli  # light: the server loads on use

    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(handler=emulator_cli.run)

    demo = verbs.add_parser(
        "demo",
        help="run the appliance here: keyboard as button, terminal as LEDs, "
        "local emulator when no API key",
    )
    demo.add_argument("--config", type=Path, help="config file (default: built-in defaults)")
    demo.add_argument(
        "--audio",
        choices=["auto", "room", "default"],
        default="auto",
        help="room: a virtual sound card; default: ALSA's default devices; "
        "auto: default if there is a sound card, else room",
    )
    demo.add_argument(
        "--wav",
        type=Path,
        default=Path("/usr/share/sounds/alsa/Front_Center.wav"),
        help="what the virtual room says into the microphone (16-bit WAV)",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("demo-reply.wav"),
        help="where the virtual room's recording of the speaker goes",
    )
    demo.add_argument(
        "--wake",
        action="store_true",
        help="turn the wake word on; the virtual room says it with a question",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--interactive", action="store_true", default=None, help="wait for keys")
    mode.add_argument(
        "--script", dest="interactive", action="store_false", help="one scripted conversation"
    )
    demo.set_defaults(handler=_demo)

    run = verbs.add_parser("run", help="run the appliance (what the systemd service starts)")
    run.add_argument("--config", type=Path, help="config file (default: the service's)")
    run.add_argument("--debug", action="store_true", help="log at debug level")
    run.set_defaults(handler=_run)

    def control_verb(name: str, help_text: str) -> argparse.ArgumentParser:
        verb = verbs.add_parser(name, help=help_text)
        verb.add_argument("--socket", type=Path, help="the daemon's control socket")
        verb.add_argument("--config", type=Path, help="config file naming the socket")
        return verb

    control_verb("talk", "start a conversation, as if the button was pressed").set_defaults(
        handler=_control, verb="talk"
    )
    control_verb("stop", "end the conversation and stop the speaker").set_defaults(
        handler=_control, verb="stop"
    )
    mute = control_verb("mute", "mute or unmute the microphone")
    mute.add_argument("setting", choices=["on", "off"])
    mute.set_defaults(handler=_control, verb="mute")
    status = control_verb("status", "state, last error, counters and tokens used")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_control, verb="status")
    control_verb("timers", "list the timers and alarms that are set").set_defaults(
        handler=_control, verb="timers"
    )
    timer = control_verb("timer", "manage one timer or alarm")
    timer.add_argument("action", choices=["cancel"])
    timer.add_argument("id", help="its id, from `appliance timers`")
    timer.set_defaults(handler=_control, verb="timer")
    ask = control_verb("ask", "type to the assistant; the answer is spoken and printed")
    ask.add_argument("text", nargs="+")
    ask.set_defaults(handler=_control, verb="ask")
    say = control_verb("say", "have the speaker announce this text in the assistant's voice")
    say.add_argument("text", nargs="+")
    say.set_defaults(handler=_control, verb="say")
    return parser


def _check(args: argparse.Namespace) -> int:
    from appliance import config, service_key
    from appliance.doctor.config_check import problems_in
    from appliance.hardware import pinmap

    path = args.path or Path(os.environ.get("APPLIANCE_CONFIG") or config.DEFAULT_PATH)
    try:
        cfg = config.load(path)
        found = service_key.locate(cfg)  # where the installed service looks, too
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    problems = problems_in(cfg, path, camera=True)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EX_CONFIG
    print(f"{path}: OK")
    for line in pinmap.describe(cfg):
        print(f"  {line}")
    print(f"model: {cfg.live.model}")
    for server in cfg.mcp.servers:
        print(server.describe())
    if found:
        print(f"API key: from {found.describe()}")
    else:
        print(
            "API key: none found; the service cannot talk to Gemini until one is in "
            "/etc/appliance/gemini-api-key (`appliance demo` uses the local emulator)"
        )
    return EX_OK


def _doctor(args: argparse.Namespace) -> int:
    from appliance import config
    from appliance.doctor.runner import Options, run_doctor

    path = args.config or Path(os.environ.get("APPLIANCE_CONFIG") or config.DEFAULT_PATH)
    return run_doctor(Options(config_path=path, audio_test=args.audio_test))


def _run(args: argparse.Namespace) -> int:
    from appliance import config

    path = args.config or Path(os.environ.get("APPLIANCE_CONFIG") or config.DEFAULT_PATH)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    from appliance.daemon.app import run_service

    return run_service(cfg, path, level="debug" if args.debug else None)


def _control(args: argparse.Namespace) -> int:
    from appliance import config
    from appliance.daemon.control import ControlClient, ControlError, socket_path

    path = args.socket
    if path is None:
        try:
            cfg = config.load(args.config)
        except config.ConfigError as exc:
            print(exc, file=sys.stderr)
            return EX_CONFIG
        path = socket_path(cfg.control)
    client = ControlClient(path)
    try:
        if args.verb == "talk":
            client.talk()
        elif args.verb == "stop":
            client.stop()
        elif args.verb == "mute":
            client.mute(args.setting == "on")
        elif args.verb == "status":
            _print_status(client.status(), as_json=args.json)
        elif args.verb == "timers":
            _print_timers(client.timers())
        elif args.verb == "timer":
            print(f"cancelled {client.cancel_timer(args.id)}")
        else:
            lines = (client.ask if args.verb == "ask" else client.say)(" ".join(args.text))
            _print_transcript(lines)
    except ControlError as exc:
        print(f"appliance {args.verb}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return EX_OK


def _print_transcript(lines: Iterable[tuple[str, str]]) -> None:
    """Transcript fragments as two-speaker lines: `you: ...` / `assistant: ...`."""
    current = None
    for role, text in lines:
        who = "you" if role == "user" else "assistant"
        if who != current:
            if current is not None:
                print()
            print(f"{who}: ", end="")
            current = who
        print(text, end="", flush=True)
    if current is not None:
        print()


def _print_timers(timers: list[dict[str, Any]]) -> None:
    if not timers:
        print("no timers or alarms are set")
    for t in timers:
        label = f" {t['label']!r}" if t.get("label") else ""
        extra = t.get("duration") or ", ".join(t.get("repeat") or []) or "once"
        print(f"{t['id']}  {t['kind']}{label}  rings {t['rings_at']}  ({extra})")


def _print_status(status: dict[str, object], *, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return
    for key, value in status.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for sub, subvalue in value.items():
                print(f"  {sub}: {subvalue}")
        else:
            print(f"{key}: {value}")


def _demo(args: argparse.Namespace) -> int:
    from appliance import config
    from appliance.demo import DemoOptions, run_demo

    try:
        cfg = config.load(args.config) if args.config else config.Config()
        found = config.find_api_key(cfg)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    options = DemoOptions(
        audio=args.audio,
        wav=args.wav,
        out=args.out,
        interactive=args.interactive,
        wake=args.wake,
    )
    return run_demo(cfg, found[0] if found else None, options)
