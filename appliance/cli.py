"""`appliance VERB ...`: the command line, for the service and for people over SSH.

Each verb imports what it needs only when it runs: on a Pi Zero 2 W, importing the
google-genai SDK alone takes seconds, and `appliance check` or `appliance status` should
answer at once. Exit codes follow sysexits.h, so systemd and scripts can tell a config
error (78, which the unit does not restart on) from a passing failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_NOPERM = 77
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
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="A push-to-talk smart speaker for the Gemini Live API.",
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB")

    check = verbs.add_parser("check", help="validate a config file and show what it means")
    check.add_argument("path", nargs="?", type=Path, help="config file (default: the service's)")
    check.set_defaults(handler=_check)

    emulator = verbs.add_parser("emulator", help="run the local Live API emulator")
    from appliance.live import emulator as emulator_cli  # light: the server loads on use

    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(handler=emulator_cli.run)

    demo = verbs.add_parser(
        "demo", help="talk once through the Live client (local emulator when no API key)"
    )
    demo.add_argument("--config", type=Path, help="config file (default: built-in defaults)")
    demo.add_argument(
        "--wav",
        type=Path,
        default=Path("/usr/share/sounds/alsa/Front_Center.wav"),
        help="what the user says: a WAV file (default: a voice that ships with alsa-utils)",
    )
    demo.add_argument("--turns", type=int, default=2, help="how many times to say it")
    demo.add_argument(
        "--out", type=Path, default=Path("demo-reply.wav"), help="where to write the reply"
    )
    demo.add_argument(
        "--play", metavar="DEVICE", help="also play the reply on this ALSA device (aplay -L)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _check(args: argparse.Namespace) -> int:
    from appliance import config

    path = args.path or Path(os.environ.get("APPLIANCE_CONFIG") or config.DEFAULT_PATH)
    try:
        cfg = config.load(path)
        found = config.find_api_key(cfg)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    print(f"{path}: OK")
    print(f"board: {cfg.board}")
    try:
        from appliance.hardware import pinmap
    except ImportError:  # the hardware layer is optional at this point of the build
        pass
    else:
        for line in pinmap.describe(cfg):
            print(f"  {line}")
    print(f"model: {cfg.live.model}")
    print(f"API key: {'from ' + found[1] if found else 'none (the demo uses the local emulator)'}")
    return EX_OK


def _demo(args: argparse.Namespace) -> int:
    from appliance import config
    from appliance.demo import run_demo

    try:
        cfg = config.load(args.config) if args.config else config.Config()
        found = config.find_api_key(cfg)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    return run_demo(
        cfg,
        api_key=found[0] if found else None,
        wav=args.wav,
        turns=args.turns,
        out=args.out,
        play_device=args.play,
    )
