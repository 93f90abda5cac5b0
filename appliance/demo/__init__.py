"""`appliance demo`: the real daemon, on whatever this machine has.

- Live API: Gemini when an API key is found, else the local emulator, started in this
  process (TLS on 127.0.0.1, the real SDK talking to it).
- Audio: the default ALSA devices when the machine has a sound card, else a virtual one
  (`appliance.demo.room`: a JACK dummy server, and a "room" that says a WAV into the
  microphone and records the speaker to a WAV file).
- Button and LEDs: the keyboard and the terminal.
- `--wake`: the wake word is on; the virtual room says it, with a question after it.

Without a terminal (CI, a pipe) it runs a short scripted conversation and exits; in a
terminal it waits for keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from appliance.config import Config

DEFAULT_WAV = Path("/usr/share/sounds/alsa/Front_Center.wav")

_ANSI_RESET = "\033[0m"

SETTLE_S = 2.0
"""The scripted demo talks after this long, as a person would: the voice detectors on
the device have heard the room by then (a conversation in the first second or two
after start finds the voice gate still warming up: it then sends everything)."""


def has_sound_card() -> bool:
    """True when ALSA lists at least one card (`aplay -l` would show it)."""
    try:
        cards = Path("/proc/asound/cards").read_text()
    except OSError:
        return False
    return "no soundcards" not in cards and bool(cards.strip())


@dataclass
class DemoOptions:
    audio: str = "auto"  # auto | room | default
    wav: Path = DEFAULT_WAV
    out: Path = Path("demo-reply.wav")
    interactive: bool | None = None  # None: when stdin is a terminal
    wake: bool = False  # the wake word is on; the room says it before its question


class Terminal:
    """LED states and transcripts, printed; colours from the config's LED patterns."""

    def __init__(self, config: Config) -> None:
        self._patterns = config.leds.states
        self._colour = sys.stdout.isatty()
        self._speaker: str | None = None

    def state(self, name: str) -> None:
        pattern = self._patterns.get(name)
        dot = "●"
        if pattern is not None and self._colour:
            r, g, b = (int(pattern.colour[i : i + 2], 16) for i in (1, 3, 5))
            dot = f"\033[38;2;{r};{g};{b}m●{_ANSI_RESET}"
        look = f"{pattern.pattern} {pattern.colour}" if pattern else ""
        self._end_line()
        print(f"  [leds] {dot} {name:<10} {look}", flush=True)

    def transcript(self, role: str, text: str) -> None:
        who = "you" if role == "user" else "assistant"
        if who != self._speaker:
            self._end_line()
            print(f"  {who}: ", end="")
            self._speaker = who
        print(text, end="", flush=True)

    def say(self, text: str) -> None:
        self._end_line()
        print(text, flush=True)

    def _end_line(self) -> None:
        if self._speaker is not None:
            print(flush=True)
            self._speaker = None


def run_demo(config: Config, api_key: SecretStr | None, options: DemoOptions) -> int:
    """Run the demo; returns the exit code."""
    return asyncio.run(_demo(config, api_key, options))


async def _demo(config: Config, api_key: SecretStr | None, options: DemoOptions) -> int:
    from appliance.daemon import service

    service.setup_logging("warning", journal=False)
    if options.wake:
        if config.behaviour.mode != "toggle":
            raise SystemExit('appliance demo --wake: the wake word needs behaviour.mode = "toggle"')
        config = _with(config, "wake", enabled=True)
    term = Terminal(config)
    with tempfile.TemporaryDirectory(prefix="appliance-demo-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            if api_key is None:
                config, api_key = await _start_emulator(stack, config, term)
            else:
                term.say(f"Talking to Gemini ({config.live.model}).")
            room = None
            if options.audio == "room" or (options.audio == "auto" and not has_sound_card()):
                room = stack.enter_context(_virtual_room(tmp, term))
                config = _with(config, "audio", capture_device="roommic", playback_device="roomspk")
            else:
                term.say(
                    f"Audio: microphone {config.audio.capture_device!r}, speaker "
                    f"{config.audio.playback_device!r}."
                )
            config = _with(config, "control", socket=tmp / "control.sock")
            code = await _converse(config, api_key, tmp, term, room, options)
            if room is not None:
                _write_recording(room, options.out, term)
            return code


async def _start_emulator(
    stack: contextlib.AsyncExitStack, config: Config, term: Terminal
) -> tuple[Config, SecretStr]:
    from appliance.live.emulator import Emulator, Scenario

    emu = await stack.enter_async_context(Emulator(Scenario(think_ms=300, realtime_factor=2.0)))
    term.say(
        f"No Gemini API key found: talking to the local Live API emulator at {emu.base_url}.\n"
        "Set GEMINI_API_KEY to talk to Gemini instead."
    )
    live = {"endpoint": emu.base_url, "ca_file": emu.ca_file}
    return _with(config, "live", **live), SecretStr(emu.api_key)


@contextlib.contextmanager
def _virtual_room(tmp: Path, term: Terminal) -> Iterator[Any]:
    from appliance.demo.room import JackServer, RoomClient, alsa_config, jack_available

    why = jack_available()
    if why:
        raise SystemExit(f"appliance demo: no sound card and no virtual one: {why}")
    server = JackServer(name=f"appliance-demo-{os.getpid()}")
    server.start()
    try:
        with server.environment():
            os.environ["ALSA_CONFIG_PATH"] = str(alsa_config(tmp / "asound.conf"))
            room = RoomClient(server.name, name="room", max_seconds=300)
            try:
                room.start_recording()
                term.say(
                    "No sound card: using a virtual one (JACK dummy backend). A voice is "
                    "played into the microphone when you talk; the speaker is recorded."
                )
                yield room
            finally:
                room.close()
    finally:
        server.stop()


def _with(config: Config, section: str, **values: Any) -> Config:
    updated = getattr(config, section).model_copy(update=values)
    return config.model_copy(update={section: updated})


def _voice_48k(path: Path) -> Any:
    import numpy as np

    from appliance.live.emulator.speech import resample

    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit(f"appliance demo: {path} is not 16-bit PCM")
        data = wav.readframes(wav.getnframes())
        if wav.getnchannels() > 1:
            data = np.frombuffer(data, "<i2")[:: wav.getnchannels()].tobytes()
        data = resample(data, wav.getframerate(), 48000)
    voice = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    return np.concatenate([voice, np.zeros(48000, np.float32)])


async def _converse(
    config: Config,
    api_key: SecretStr,
    tmp: Path,
    term: Terminal,
    room: Any,
    options: DemoOptions,
) -> int:
    from appliance.daemon import state
    from appliance.daemon.app import Appliance

    reached: dict[str, asyncio.Event] = {}

    def on_state(name: str) -> None:
        term.state(name)
        reached.setdefault(name, asyncio.Event()).set()

    async def until(name: str, within_s: float = 60.0) -> None:
        event = reached.setdefault(name, asyncio.Event())
        event.clear()
        async with asyncio.timeout(within_s):
            await event.wait()

    app = Appliance(
        config,
        api_key=api_key,
        state_dir=tmp / "state",
        environ={},
        on_state=on_state,
        on_transcript=term.transcript,
    )
    voice = _voice_48k(options.wav) if room is not None else None
    wake_words = wake_phrase(config)
    question = f"{wake_words}, what's the time?"

    async def talk() -> None:
        if options.wake:
            if room is not None:
                term.say(f'  (the room says "{question}")')
                room.play(_spoken_48k(question))
            else:
                term.say(f'  (say "{question}")')
            return
        app.post(state.Press())
        await until("listening")
        if room is not None:
            term.say(f"  (the room says {options.wav.name} into the microphone)")
            room.play(voice)
        else:
            term.say("  (speak now)")

    async def follow_up() -> None:
        """A question in an open conversation: no wake word, no press."""
        await asyncio.sleep(0.5)  # past the half-duplex tail, as a person would be
        if room is not None:
            term.say(f"  (the room says {options.wav.name}: a follow-up, no wake word)")
            room.play(voice)

    runner = asyncio.create_task(app.run())
    try:
        ready = asyncio.create_task(app.ready.wait())
        await asyncio.wait({ready, runner}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            return runner.result()
        interactive = sys.stdin.isatty() if options.interactive is None else options.interactive
        if interactive:
            await _keyboard(app, talk, term, options.wake)
        elif options.wake:
            await _wake_script(app, talk, follow_up, until, term)
        else:
            await _script(app, talk, until, term)
        status = app.status()
        term.say(
            f"Done: {status['counters']['turns']} turns, "
            f"{status['counters']['mic_bytes_sent'] / 32000:.1f} s of microphone audio sent, "
            f"{status['tokens']['today']['total']} tokens."
        )
        return 0
    finally:
        app.shutdown()
        await runner


async def _script(app: Any, talk: Any, until: Any, term: Any) -> None:
    from appliance.daemon import state

    term.say("Scripted demo (no terminal): a spoken turn, then a typed one.")
    await asyncio.sleep(SETTLE_S)
    await talk()
    await until("speaking")
    await until("listening")
    from appliance.daemon.verbs import TurnIncomplete

    try:
        async for _line in app.transcript_of_next_turn(state.Ask("What can you do?")):
            pass
    except TurnIncomplete as exc:
        term.say(f"The typed turn got no complete answer: {exc}")
    await asyncio.sleep(0.5)
    app.post(state.Stop())
    await until("idle", 10)


async def _wake_script(app: Any, talk: Any, follow_up: Any, until: Any, term: Any) -> None:
    from appliance.daemon import state

    term.say(
        "Scripted demo (no terminal): the room says the wake word and a question in one "
        "breath, then a follow-up without it."
    )
    await asyncio.sleep(SETTLE_S)
    await talk()
    try:
        await until("connecting", 10)
    except TimeoutError:
        raise SystemExit("appliance demo: the wake word was not heard") from None
    await until("speaking")
    await until("listening")
    await follow_up()
    await until("speaking")
    await until("listening")
    app.post(state.Stop())
    await until("idle", 10)


def wake_phrase(config: Config) -> str:
    """What to say to wake the configured model ("okay nabu")."""
    import json

    model = config.wake.model
    if model.endswith(".json"):
        return str(json.loads(Path(model).read_text()).get("wake_word", model)).lower()
    return model.replace("_", " ")


def _spoken_48k(text: str) -> Any:
    """`text` said by espeak-ng, for the virtual room's microphone."""
    import numpy as np

    from appliance.live.emulator.speech import OUTPUT_RATE, resample, speak

    pcm = resample(speak(text), OUTPUT_RATE, 48000)
    voice = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    return np.concatenate([voice, np.zeros(48000, np.float32)])


async def _keyboard(app: Any, talk: Any, term: Any, wake: bool) -> None:
    from appliance.daemon import state

    term.say(
        "Keys: Enter = press the button"
        + (" (--wake: the room says the wake word)" if wake else "")
        + ", s = stop, m = mute on/off, a TEXT = type to the assistant, q = quit."
    )
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line or line.strip() == "q":
            return
        command = line.strip()
        if command == "":
            asyncio.get_running_loop().create_task(talk())
        elif command == "s":
            app.post(state.Stop())
        elif command == "m":
            app.post(state.Mute(on=app.machine.state != "muted"))
        elif command.startswith("a "):
            app.post(state.Ask(command[2:]))
        else:
            term.say("  ? Enter, s, m, a TEXT or q")


def _write_recording(room: Any, out: Path, term: Terminal) -> None:
    import numpy as np

    _, blocks = room.blocks()
    if len(blocks) > 1:  # after a stop the jack plugin repeats its last block: silence it
        blocks[1:][np.all(blocks[1:] == blocks[:-1], axis=1)] = 0
    samples = blocks.reshape(-1) if len(blocks) else np.zeros(0, np.float32)
    loud = np.flatnonzero(np.abs(samples) > 1e-4)
    if len(loud):
        samples = samples[loud[0] : loud[-1] + 1]
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(pcm)
    term.say(f"The speaker's output ({len(pcm) / 96000:.1f} s) is in {out}.")
