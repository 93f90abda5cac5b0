"""`appliance emulator`: run the local Live API until interrupted.

Prints the base URL, the CA file and the environment an unmodified SDK client needs
(`GOOGLE_GEMINI_BASE_URL`, `SSL_CERT_FILE`, `GEMINI_API_KEY`), so the appliance or any
other client (the seed article's, for one) can be pointed at it with no code change.
Kept import-light: the server is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to `parser` (the `appliance emulator` subcommand)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument(
        "--cert-dir",
        type=Path,
        default=Path("/tmp/appliance-emulator"),
        help="directory for the CA certificate clients must trust (ca.pem)",
    )
    parser.add_argument("--api-key", default="emulator-key", help="the key clients must send")
    parser.add_argument("--think-ms", type=int, default=150, help="delay before each reply")
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=4.0,
        help="send reply audio this many times faster than real time (0: unpaced)",
    )
    parser.add_argument("--chunk-ms", type=int, default=40, help="reply audio per frame")
    parser.add_argument(
        "--model",
        action="append",
        metavar="GLOB",
        help="accepted model name pattern (repeatable; default gemini-*live*, *native-audio*)",
    )
    parser.add_argument("--reply-text", help="say this instead of the default reply")
    parser.add_argument(
        "--reply-wav", type=Path, help="16-bit mono WAV to send as every reply (any rate)"
    )
    parser.add_argument(
        "--no-espeak", action="store_true", help="tones instead of espeak-ng speech"
    )
    parser.add_argument(
        "--accept-media-chunks",
        action="store_true",
        help="accept legacy realtime_input.media_chunks audio instead of closing with 1007",
    )
    parser.add_argument(
        "--vad-threshold", type=float, default=500.0, help="speech RMS threshold (16-bit units)"
    )
    parser.add_argument(
        "--vad-silence-ms", type=int, default=500, help="silence that ends a spoken turn"
    )


def _scenario(args: argparse.Namespace) -> object:
    from .scenario import DEFAULT_MODELS, Reply, Scenario
    from .speech import OUTPUT_RATE, resample, wav_bytes_to_pcm
    from .vad import VadConfig

    pcm = None
    if args.reply_wav is not None:
        data, rate = wav_bytes_to_pcm(args.reply_wav.read_bytes())
        pcm = resample(data, rate, OUTPUT_RATE)
    return Scenario(
        default_reply=Reply(text=args.reply_text, pcm=pcm),
        think_ms=args.think_ms,
        chunk_ms=args.chunk_ms,
        realtime_factor=args.realtime_factor,
        vad=VadConfig(threshold_rms=args.vad_threshold, silence_ms=args.vad_silence_ms),
        models=tuple(args.model) if args.model else DEFAULT_MODELS,
        use_espeak=not args.no_espeak,
        accept_media_chunks=args.accept_media_chunks,
    )


def describe(env: dict[str, str], out: TextIO) -> None:
    """Print how to point a client at the emulator."""
    print(f"Live API emulator listening on {env['GOOGLE_GEMINI_BASE_URL']}", file=out)
    print(f"CA certificate: {env['SSL_CERT_FILE']}", file=out)
    print("Point a google-genai client at it with:", file=out)
    for name, value in env.items():
        print(f"  export {name}={shlex.quote(value)}", file=out)
    out.flush()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code."""
    import asyncio
    import contextlib
    import signal

    from .recorder import Recorder
    from .scenario import Scenario
    from .server import Emulator

    try:
        scenario = _scenario(args)
    except (OSError, ValueError) as exc:
        print(
            f"appliance emulator: cannot read --reply-wav {args.reply_wav}: {exc}", file=sys.stderr
        )
        return 2
    assert isinstance(scenario, Scenario)
    emulator = Emulator(
        scenario,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        cert_dir=args.cert_dir,
        recorder=Recorder(keep_raw=False, limit=10_000),
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with emulator:
            describe(emulator.env(), sys.stdout)
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(
            f"appliance emulator: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m appliance.live.emulator.cli` until the main CLI hooks this up."""
    parser = argparse.ArgumentParser(prog="appliance emulator", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
