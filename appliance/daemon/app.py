"""The appliance: builds the parts from config and runs them around the state machine.

One asyncio loop, one inbox. Everything that happens (a button gesture, a control
verb, a Live event, the speaker running dry, a timer) is put in the inbox; the loop
takes one item at a time, asks the state machine what it means, shows the new state on
the LEDs and in `systemctl status`, logs the transition, and carries out the actions.
Handling one item at a time is what makes ordering questions ("did the first reply
chunk arrive before or after the press?") have one answer.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from appliance import config as config_mod
from appliance.audio.capture import Capture
from appliance.audio.devices import DeviceState
from appliance.audio.earcons import Earcons
from appliance.audio.echo import EchoCanceller, open_canceller
from appliance.audio.playback import Playback
from appliance.audio.volume import Volume
from appliance.breather import Breather
from appliance.config import Config
from appliance.daemon import service, state
from appliance.daemon.button_events import button_event
from appliance.daemon.control import ControlServer, socket_path
from appliance.daemon.conversation import MicPump
from appliance.daemon.cost import Budget
from appliance.daemon.inbox import Call, Connected, Device, Item, Live, Request
from appliance.daemon.listeners import TranscriptListeners
from appliance.daemon.memory import HandleStore, UsageBook
from appliance.daemon.reload import reload_config
from appliance.daemon.session import LiveSession
from appliance.daemon.status import status_line, status_report
from appliance.daemon.tool_context import DaemonToolContext
from appliance.daemon.verbs import ControlVerbs, why_ended
from appliance.tasks import cancel_and_wait
from appliance.timers.clock import Clock
from appliance.timers.keeper import TimerKeeper
from appliance.timers.ringer import Ringer
from appliance.tools.setup import make_toolbox
from appliance.tools.toolbox import Toolbox
from appliance.voice.hands_free import HandsFree

LIVE_CLIENT_MODULE = "appliance.live.client"
"""Imported after READY=1, in the background: the google-genai SDK takes seconds to
import on a Pi Zero 2 W, which should neither delay start-up nor the first press."""

log = logging.getLogger("appliance")

KEEP_SPEAKER_RUNNING = frozenset({"listening", "thinking", "speaking"})
"""States in which the speaker runs on silence between replies (echo cancellation on)."""
LIMIT_SHOW_S = 4.0
"""How long the LEDs show `limit` after a press refused for the daily limit."""


class Appliance:
    """The daemon. `await run()` until `shutdown()`; returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        api_key: SecretStr | None,
        config_path: Path | None = None,
        state_dir: Path | None = None,
        environ: dict[str, str] | None = None,
        notifier: service.Notifier | None = None,
        on_state: Callable[[str], None] | None = None,
        on_transcript: Callable[[str, str], None] | None = None,
        picamera2_class: type | None = None,
        clock: Clock | None = None,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self.config = config
        self.config_path = config_path
        self.api_key = api_key
        self.state_dir = state_dir or Path(
            env.get("STATE_DIRECTORY", "").split(":")[0] or "/var/lib/appliance"
        )
        self.env = env
        self.notifier = notifier or service.Notifier(env)
        self.on_state = on_state
        self.on_transcript = on_transcript
        self._picamera2_class = picamera2_class
        """Stands in for `picamera2.Picamera2` (the test rig's camera that makes JPEGs)."""
        self.machine = state.StateMachine(state.Policy.from_config(config))
        self.inbox: asyncio.Queue[Item] = asyncio.Queue()
        self.handles = HandleStore(self.state_dir, config.behaviour.remember_s)
        self.usage = UsageBook(self.state_dir)
        self.budget = Budget(config.cost)
        self.last_error: str | None = None
        self.device_problems: dict[str, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.toolbox = Toolbox([])
        """Where the session's tools come from; its sources are set up in start()."""
        self._last_event: state.Event | None = None
        """The event being carried out (why a conversation ends, for `ask`)."""
        self.listeners = TranscriptListeners(self.post)
        self._stopped = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the parts are open and READY=1 was sent."""
        self._background: set[asyncio.Task[Any]] = set()
        # Parts, built in start().
        self.capture: Capture | None = None
        self.playback: Playback | None = None
        self.volume: Volume | None = None
        self.earcons = Earcons(config.audio.earcons)
        self.mic: MicPump | None = None
        self.hands_free = HandsFree(config, self.post)
        self.button: Any = None
        self.leds: Any = None
        self.camera: Any = None
        self.echo: EchoCanceller | None = None
        self.control: ControlServer | None = None
        self._clock = clock
        """The wall clock timers and alarms keep (a manual one in tests)."""
        self.timers: TimerKeeper | None = None
        self.ringer: Ringer | None = None
        self.session = LiveSession(
            self,
            handles=self.handles,
            usage=self.usage,
            listeners=self.listeners,
            tool_context=DaemonToolContext(self),
            on_transcript=on_transcript,
        )
        """The Live session of the conversation now (if one is open)."""

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open audio, GPIO, camera and the control socket; then READY=1."""
        cfg = self.config
        if self.api_key is not None:
            service.SECRETS.register(self.api_key.get_secret_value())
        self.volume = Volume(cfg.audio, self.state_dir)
        self.echo = open_canceller(cfg.audio)
        self.capture = Capture(
            cfg.audio,
            on_state=self._device_callback("microphone"),
            ring_ms=HandsFree.ring_ms(cfg),
            cleaner=self.echo.clean if self.echo else None,
        )
        self.playback = Playback(
            cfg.audio,
            volume=self.volume,
            on_state=self._device_callback("speaker"),
            on_playing=self.hands_free.speaker,
            reference=self.echo.reference if self.echo else None,
        )
        self.hands_free.attach(self.capture, asyncio.get_running_loop())
        await self.capture.start()
        await self.playback.start()
        self.mic = MicPump(
            self.capture,
            preroll_ms=cfg.audio.preroll_ms,
            gate=self.hands_free.make_gate(),
            on_voice=self.hands_free.voice,
        )
        self.open_hardware()
        self._open_timers()
        self.toolbox = make_toolbox(cfg, camera_present=self.camera is not None, timers=self.timers)
        self.toolbox.prepare()
        self.control = ControlServer(
            socket_path(cfg.control, self.env), ControlVerbs(self), group=cfg.control.group
        )
        await self.control.start()
        self.notifier.ready(status=status_line(self))
        self.notifier.start_watchdog(through=lambda ping: self.post(Call(ping)))
        self.ready.set()
        self._spawn(asyncio.to_thread(importlib.import_module, LIVE_CLIENT_MODULE))
        log.info(
            "ready: mode %s, mic %s, speaker %s, control %s",
            cfg.behaviour.mode,
            cfg.audio.capture_device,
            cfg.audio.playback_device,
            self.control.path,
            extra=service.fields(state=self.machine.state),
        )

    def open_hardware(self) -> None:
        """The button, the LEDs and the camera, as the config describes them."""
        from appliance.hardware.button import open_button
        from appliance.hardware.camera import open_camera
        from appliance.hardware.leds import open_leds

        cfg = self.config
        self.leds = open_leds(cfg.leds)
        self.leds.show(self.machine.state)
        self.button = open_button(cfg.button, mode=cfg.behaviour.mode, on_event=self._on_button)
        self.camera = open_camera(
            cfg.camera, on_active=self.leds.camera_active, picamera2_class=self._picamera2_class
        )

    def _open_timers(self) -> None:
        cfg = self.config.timers
        if not cfg.enabled:
            return
        assert self.playback is not None
        self.timers = TimerKeeper(
            self.state_dir, lambda entry: self.post(state.Ring(entry.describe())), self._clock
        )
        self.ringer = Ringer(
            self.playback,
            self.volume,
            floor_percent=cfg.ring_volume,
            max_s=cfg.ring_max_s,
            on_ended=lambda: self.post(state.RingEnded()),
        )
        self.timers.start()

    def close_hardware(self) -> None:
        """Release the button and the LEDs (the camera closes on its own: it is async)."""
        if self.button is not None:
            self.button.close()
        if self.leds is not None:
            self.leds.close()

    async def run(self) -> int:
        """Start, then handle the inbox until `shutdown()`; returns the exit code."""
        consumer: asyncio.Task[None] | None = None
        try:
            await self.start()
            consumer = asyncio.create_task(self._consume(), name="inbox")
            await self._stopped.wait()
        finally:
            if consumer is not None:
                await cancel_and_wait(consumer)
            await self._close()
        return 0

    def shutdown(self) -> None:
        """Stop the daemon (SIGTERM): the conversation ends, the parts close."""
        self._stopped.set()

    async def _close(self) -> None:
        self._cancel_timer()
        if self.timers is not None:
            await self.timers.close()
        if self.ringer is not None:
            await self.ringer.stop()
        if self.playback is not None:
            await self.playback.stop()
        await self.session.close()
        await self.toolbox.close()
        if self.mic is not None:
            await self.mic.stop(keep=False)
        if self.control is not None:
            await self.control.close()
        if self.camera is not None:
            await self.camera.close()
        self.close_hardware()
        if self.capture is not None:
            await self.capture.stop()
        self.hands_free.close()
        if self.playback is not None:
            await self.playback.close()
        for task in list(self._background):
            task.cancel()

    def post(self, item: Item) -> None:
        """Put something in the inbox (from the loop's thread)."""
        self.inbox.put_nowait(item)

    # -- the loop ---------------------------------------------------------------------

    async def _consume(self) -> None:
        breather = Breather()  # a backlog (a Live flood) must not hold the loop: `status`
        while True:
            await breather.breathe()
            item = await self.inbox.get()
            try:
                await self._handle(item)
            except Exception as exc:
                # The state has moved but its actions did not all happen: end the
                # conversation (error) rather than leave the parts out of step with it.
                log.exception("handling %r failed", item)
                self.last_error = f"internal error: {type(exc).__name__}: {exc}"
                self.post(state.Fatal(self.last_error))

    async def _handle(self, item: Item) -> None:
        if isinstance(item, Live | Connected):
            await self.session.take(item)
        elif isinstance(item, Device):
            await self._on_device(item)
        elif isinstance(item, Call):
            result = item.fn()
            if asyncio.iscoroutine(result):
                await result
        elif isinstance(item, Request):
            if not item.withdrawn:
                await self.feed(item.event)
        else:
            await self.feed(item)

    async def feed(self, event: state.Event) -> None:
        """Carry out `event` now: only from the item being handled, to keep the order."""
        if isinstance(event, state.Press | state.Wake) and self._refused_over_limit():
            return
        if isinstance(event, state.Press) and self.device_problems and self.machine.state == "idle":
            # `stop` acknowledged a device's error but it is still gone: say so again
            # rather than open a conversation nobody can be heard in
            event = state.Fatal(next(iter(self.device_problems.values())))
        transition = self.machine.handle(event)
        if not transition.changed:
            return
        after = transition.after
        log.info(
            "%s",
            transition,
            extra=service.fields(
                state=after, session=str(self.session.number), turn=self.session.turn
            ),
        )
        if transition.before != after:
            self.hands_free.follow(after)
            if self.playback is not None and self.config.audio.echo_cancel:
                # From listening on, not while connecting: the first session set-up
                # (TLS, the SDK) holds the interpreter for up to a second on a slow
                # machine, and silence that underruns meanwhile costs the alignment.
                self.playback.keep_running = after in KEEP_SPEAKER_RUNNING
            if self.leds is not None:
                self.leds.show(after)
            self.notifier.status(status_line(self))
            if self.on_state is not None:
                self.on_state(after)
        self._last_event = event
        for action in transition.actions:
            await self._do(action)

    def limit_reached(self) -> bool:
        """Today's conversations cost `[cost] daily_limit` or more."""
        return self.budget.reached(self.usage.today())

    def limit_message(self) -> str:
        return self.budget.limit_message(self.usage.today())

    def _refused_over_limit(self) -> bool:
        """A press or wake word while idle with the day's limit reached: an earcon and the
        LEDs' `limit` look for a few seconds instead of a conversation."""
        if self.machine.state != "idle" or not self.limit_reached():
            return False
        log.warning("press refused: %s", self.limit_message())
        self._play_earcon("error")
        if self.leds is not None:
            self.leds.show("limit")
            asyncio.get_running_loop().call_later(LIMIT_SHOW_S, self._show_state_again)
        return True

    def end_reason(self) -> str:
        """Why the conversation ends now, in words for a client waiting on its turn."""
        problems = "; ".join(self.device_problems.values())
        return self.last_error or problems or why_ended(self._last_event, self.config)

    def _show_state_again(self) -> None:
        if self.leds is not None:
            self.leds.show(self.machine.state)

    # -- actions ----------------------------------------------------------------------

    async def _do(self, action: state.Action) -> None:
        match action:
            case state.OpenSession():
                self.session.open()
            case state.CloseSession():
                await self.session.close()
            case state.KeepMic(preroll=preroll, since_ns=since_ns):
                assert self.mic is not None
                await self.mic.keep(preroll, since_ns)
            case state.StreamMic(live=live, preroll=preroll, delay_ms=delay):
                assert self.mic is not None
                if self.session.client is not None:
                    await self.mic.stream(
                        self.session.client, live=live, preroll=preroll, delay_ms=delay
                    )
            case state.StopMic(keep=keep):
                assert self.mic is not None
                await self.mic.stop(keep)
            case state.ActivityStart():
                if self.session.client is not None:
                    self.session.client.activity_start()
            case state.ActivityEnd():
                if self.session.client is not None:
                    self.session.client.activity_end()
            case state.SendText(text=text, verbatim=verbatim):
                self.session.send_text(text, verbatim)
            case state.StopPlayback():
                await self.session.stop_reply()
            case state.Earcon(name=name):
                self._play_earcon(name)
            case state.ArmTimeout(seconds=seconds):
                self._cancel_timer()
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(seconds, self.post, state.Timeout())
            case state.CancelTimeout():
                self._cancel_timer()
            case state.Camera(on=on):
                await self.session.camera(on)
            case state.Capture(on=on):
                assert self.capture is not None
                await (self.capture.start() if on else self.capture.stop())
            case state.StartRinging() if self.ringer is not None:
                self.ringer.start()
            case state.StopRinging() if self.ringer is not None:
                await self.ringer.stop()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _play_earcon(self, name: str) -> None:
        known = {"muted": "done", "unmuted": "wake"}.get(name, name)
        if self.playback is None or known not in self.earcons.enabled:
            return
        self._spawn(self.earcons.play(self.playback, known))  # type: ignore[arg-type]

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- devices and button -------------------------------------------------------------

    def _device_callback(self, name: str) -> Callable[..., None]:
        def changed(device_state: DeviceState, error: Exception | None = None) -> None:
            self.post(Device(name, device_state, str(error) if error else None))

        return changed

    async def _on_device(self, item: Device) -> None:
        """A device that is missing, busy or failed shows `error` until every one is back."""
        if item.state in (DeviceState.MISSING, DeviceState.BUSY, DeviceState.FAILED):
            message = item.message or f"the {item.name} is {item.state}"
            self.device_problems[item.name] = message
            self.last_error = message
            await self.feed(state.Fatal(message))
        elif item.state == DeviceState.OK and item.name in self.device_problems:
            del self.device_problems[item.name]
            if not self.device_problems and self.machine.state == "error":
                self.last_error = None
                await self.feed(state.Reset())

    def _on_button(self, event: Any) -> None:
        mode, muted = self.config.behaviour.mode, self.machine.state == "muted"
        mapped = button_event(event, mode=mode, muted=muted)
        if mapped is not None:
            self.post(mapped)

    # -- control socket -----------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_report(self)

    def transcript_of_next_turn(self, item: state.Event) -> AsyncIterator[tuple[str, str]]:
        """Post `item` and yield the transcript lines until the turn ends; raises
        `TurnIncomplete` when the conversation ends first (dropped, stopped, an error)."""
        return self.listeners.next_turn(item)

    # -- reload ---------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read the config again; a bad file is reported and the old one kept."""
        await reload_config(self)


def run_service(config: Config, config_path: Path | None, level: str | None = None) -> int:
    """`appliance run`: the systemd service's main."""
    service.setup_logging(level or config.logging.level)
    try:
        found = config_mod.find_api_key(config)
    except config_mod.ConfigError as exc:
        log.error("%s", exc)
        return service.EX_CONFIG
    if found is None:
        log.warning(
            "no Gemini API key (systemd credential gemini-api-key, [live] api_key_file or "
            "GEMINI_API_KEY): conversations will fail until one is set"
        )
    else:
        log.info("API key from %s", found[1])

    async def main() -> int:
        app = Appliance(config, api_key=found[0] if found else None, config_path=config_path)
        service.install_signal_handlers(app.notifier, app.shutdown, app.reload)
        started = time.monotonic()
        code = await app.run()
        log.info("stopped after %.0f s", time.monotonic() - started)
        return code

    from appliance.hardware.camera import CameraUnavailable
    from appliance.hardware.pinmap import GpioUnavailable

    try:
        return asyncio.run(main())
    except (CameraUnavailable, GpioUnavailable) as exc:
        # Configured hardware that this system cannot drive: restarting will not help.
        log.error("%s", exc)
        return service.EX_CONFIG
