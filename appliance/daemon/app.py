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
from typing import TYPE_CHECKING, Any

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
from appliance.daemon.control import ControlServer, socket_path
from appliance.daemon.conversation import MicPump
from appliance.daemon.cost import Budget
from appliance.daemon.inbox import Call, Connected, Device, Item, Live, Request
from appliance.daemon.listeners import TranscriptListeners
from appliance.daemon.memory import HandleStore, UsageBook
from appliance.daemon.quiet_timer import QuietTimer
from appliance.daemon.tool_context import DaemonToolContext
from appliance.daemon.verbs import ControlVerbs, TurnIncomplete, why_ended
from appliance.live import events as ev
from appliance.live.errors import LiveError, LiveFatalError
from appliance.tasks import cancel_and_wait
from appliance.timers.clock import Clock
from appliance.timers.keeper import TimerKeeper
from appliance.timers.ringer import Ringer
from appliance.tools.setup import make_toolbox
from appliance.tools.toolbox import SessionTools, Toolbox
from appliance.voice.hands_free import HandsFree, wants_gate

if TYPE_CHECKING:
    from appliance.live.client import LiveClient

LIVE_CLIENT_MODULE = "appliance.live.client"
"""Imported after READY=1, in the background: the google-genai SDK takes seconds to
import on a Pi Zero 2 W, which should neither delay start-up nor the first press."""

log = logging.getLogger("appliance")

VERBATIM = "Say exactly the following words, and nothing else: "

KEEP_SPEAKER_RUNNING = frozenset({"listening", "thinking", "speaking"})
"""States in which the speaker runs on silence between replies (echo cancellation on)."""
LIMIT_SHOW_S = 4.0
"""How long the LEDs show `limit` after a press refused for the daily limit."""
AUDIO_TOKENS_PER_S = 25
"""What the Live API bills a second of input audio."""


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
        self.counters: dict[str, int] = {"conversations": 0, "turns": 0, "interruptions": 0}
        self.last_error: str | None = None
        self._device_problems: dict[str, str] = {}
        self.session_no = 0
        self.turn_no = 0
        self._live: LiveClient | None = None
        self._live_tasks: set[asyncio.Task[Any]] = set()
        self._tool_tasks: dict[str, asyncio.Task[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._end_after_reply = False
        self._reply_started = False
        self._followup_expected = False
        """A tool's answer was sent to be spoken (WHEN_IDLE / INTERRUPT) and the model has
        not started that turn yet: a transcript listener (`ask`) waits for it."""
        self._followup_calls = 0
        """Calls running whose answer the model will speak: `ask` waits for them too."""
        self._session_tools = SessionTools()
        """The functions this session declared: only those run."""
        self.toolbox = Toolbox([])
        """Where the session's tools come from; its sources are set up in start()."""
        self._reply_watch = QuietTimer(
            lambda: self.config.behaviour.reply_timeout_s, self._reply_went_quiet
        )
        """A reply that goes quiet without turnComplete for `reply_timeout_s` is taken as
        done (a broken service left the appliance `speaking` with a silent speaker)."""
        self._discard_reply = False
        """The user cut the reply short: drop its remaining chunks until it ends."""
        self._last_event: state.Event | None = None
        """The event being carried out (why a conversation ends, for `ask`)."""
        self._said: tuple[str, str] | None = None
        """Transcript text of the side speaking now, logged once it is done."""
        self.listeners = TranscriptListeners(self.post)
        self._stopped = asyncio.Event()
        self.ready = asyncio.Event()
        """Set once the parts are open and READY=1 was sent."""
        self._camera_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Parts, built in start().
        self.capture: Capture | None = None
        self.playback: Playback | None = None
        self.volume: Volume | None = None
        self.earcons = Earcons(config.audio.earcons)
        self.mic: MicPump | None = None
        self.hands_free = HandsFree(config, self.post)
        self._sent_before = 0  # mic bytes sent before this conversation
        self.button: Any = None
        self.leds: Any = None
        self.camera: Any = None
        self.echo: EchoCanceller | None = None
        self.control: ControlServer | None = None
        self._clock = clock
        """The wall clock timers and alarms keep (a manual one in tests)."""
        self.timers: TimerKeeper | None = None
        self.ringer: Ringer | None = None

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
        self._open_hardware()
        self._open_timers()
        self.toolbox = make_toolbox(cfg, camera_present=self.camera is not None, timers=self.timers)
        self.toolbox.prepare()
        self.control = ControlServer(
            socket_path(cfg.control, self.env), ControlVerbs(self), group=cfg.control.group
        )
        await self.control.start()
        self.notifier.ready(status=self._status_line())
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

    def _open_hardware(self) -> None:
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

    def _close_hardware(self) -> None:
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
        await self._close_session()
        await self.toolbox.close()
        if self.mic is not None:
            await self.mic.stop(keep=False)
        if self.control is not None:
            await self.control.close()
        if self.camera is not None:
            await self.camera.close()
        self._close_hardware()
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
        if isinstance(item, Live):
            if item.session == self.session_no:
                await self._on_live(item.event)
        elif isinstance(item, Connected):
            if item.session == self.session_no:
                await self._on_connected(item.error)
        elif isinstance(item, Device):
            await self._on_device(item)
        elif isinstance(item, Call):
            result = item.fn()
            if asyncio.iscoroutine(result):
                await result
        elif isinstance(item, Request):
            if not item.withdrawn:
                await self._feed(item.event)
        else:
            await self._feed(item)

    async def _feed(self, event: state.Event) -> None:
        if isinstance(event, state.Press | state.Wake) and self._refused_over_limit():
            return
        transition = self.machine.handle(event)
        if not transition.changed:
            return
        after = transition.after
        log.info(
            "%s",
            transition,
            extra=service.fields(state=after, session=str(self.session_no), turn=self.turn_no),
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
            self.notifier.status(self._status_line())
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

    def _reply_went_quiet(self) -> None:
        log.warning(
            "the reply stopped for %.0f s without turnComplete; taking the turn as done",
            self.config.behaviour.reply_timeout_s,
        )
        self.post(Live(self.session_no, ev.TurnComplete(None)))

    def _show_state_again(self) -> None:
        if self.leds is not None:
            self.leds.show(self.machine.state)

    def _status_line(self) -> str:
        line: str = self.machine.state
        if self.machine.state == "error" and self.last_error:
            line += f": {self.last_error}"
        return line

    # -- actions ----------------------------------------------------------------------

    async def _do(self, action: state.Action) -> None:
        match action:
            case state.OpenSession():
                self._open_session()
            case state.CloseSession():
                await self._close_session()
            case state.KeepMic(preroll=preroll, since_ns=since_ns):
                assert self.mic is not None
                await self.mic.keep(preroll, since_ns)
            case state.StreamMic(live=live, preroll=preroll, delay_ms=delay):
                assert self.mic is not None
                if self._live is not None:
                    await self.mic.stream(self._live, live=live, preroll=preroll, delay_ms=delay)
            case state.StopMic(keep=keep):
                assert self.mic is not None
                await self.mic.stop(keep)
            case state.ActivityStart():
                if self._live is not None:
                    self._live.activity_start()
            case state.ActivityEnd():
                if self._live is not None:
                    self._live.activity_end()
            case state.SendText(text=text, verbatim=verbatim):
                if self._live is not None:
                    self._live.send_text(VERBATIM + text if verbatim else text)
            case state.StopPlayback():
                if self._reply_started:
                    self._discard_reply = True
                self._reply_started = False
                if self._drain_task is not None:
                    self._drain_task.cancel()
                    self._drain_task = None
                if self.playback is not None:
                    await self.playback.stop()
            case state.Earcon(name=name):
                self._play_earcon(name)
            case state.ArmTimeout(seconds=seconds):
                self._cancel_timer()
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(seconds, self.post, state.Timeout())
            case state.CancelTimeout():
                self._cancel_timer()
            case state.Camera(on=on):
                await self._camera(on)
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

    # -- the Live session -------------------------------------------------------------

    def _open_session(self) -> None:
        self.session_no += 1
        self.counters["conversations"] += 1
        self._sent_before = self.mic.sent_bytes if self.mic else 0
        self._end_after_reply = False
        # A reply cut short in the last conversation must not take this one's with it.
        self._reply_started = self._discard_reply = False
        self._followup_expected = False
        number = self.session_no
        if self.api_key is None:
            message = (
                "no Gemini API key: put it in /etc/appliance/gemini-api-key "
                "(or GEMINI_API_KEY) and restart the appliance"
            )
            self.post(Connected(number, LiveFatalError(message)))
            return
        from appliance.live.client import LiveClient

        cfg = self.config
        try:
            client = LiveClient(
                cfg.live,
                self.api_key,
                automatic_activity_detection=cfg.behaviour.mode == "toggle",
                resumption_handle=self.handles.load(),
                on_resumption_handle=self.handles.save,
                media_resolution=cfg.camera.media_resolution if cfg.camera.enabled else None,
            )
        except (OSError, ValueError) as exc:  # e.g. an unreadable [live] ca_file
            self.post(Connected(number, LiveFatalError(f"cannot set up the Live client: {exc}")))
            return
        self._live = client
        self._track(self._connect(number, client))

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._live_tasks.add(task)
        task.add_done_callback(self._live_tasks.discard)

    async def _connect(self, number: int, client: LiveClient) -> None:
        self._session_tools = SessionTools()
        if self.config.behaviour.tools:
            self._session_tools = await self.toolbox.open()
        client.declare(self._session_tools.declarations())
        try:
            await client.connect()
        except LiveError as exc:
            self.post(Connected(number, exc))
            return
        self.post(Connected(number, None))
        async for event in client.events():
            self.post(Live(number, event))

    async def _on_connected(self, error: LiveError | None) -> None:
        if error is None:
            await self._feed(state.SessionReady())
            return
        self.last_error = error.message
        await self._close_session()
        await self._feed(
            state.Fatal(error.message) if error.fatal else state.Offline(error.message)
        )

    async def _close_session(self) -> None:
        self._reply_watch.stop()
        self._log_said()
        # A turn still awaited ends here without its answer: say why (`ask` exits 1).
        problems = "; ".join(self._device_problems.values())
        reason = self.last_error or problems or why_ended(self._last_event, self.config)
        self.listeners.notify(TurnIncomplete(reason))
        client, self._live = self._live, None
        for task in list(self._live_tasks):
            task.cancel()
        self._tool_tasks.clear()
        self._followup_expected = False
        session_tools, self._session_tools = self._session_tools, SessionTools()
        await session_tools.close()  # e.g. an MCP server's connection
        await self._camera(False)
        if client is None:
            return
        await client.close()
        tally = self.usage.end_conversation()
        sent_s, audio_tokens = self._audio_sent()
        log.info(
            "conversation %d sent %.1f s of microphone audio (%d input tokens); used %s, "
            "costing %s (today %s)",
            self.session_no,
            sent_s,
            audio_tokens,
            tally.summary() if tally.turns else "no tokens",
            self.budget.describe(tally),
            self.budget.describe(self.usage.today()),
            extra=service.fields(session=str(self.session_no), audio_sent_s=f"{sent_s:.1f}"),
        )
        if self.config.behaviour.remember_s <= 0:
            self.handles.forget()

    async def _on_live(self, event: ev.LiveEvent) -> None:
        match event:
            case ev.AudioChunk(pcm=pcm, received_ns=received):
                if self._discard_reply:
                    return
                if not self._reply_started:
                    self._reply_started = True
                    self._followup_expected = False  # this turn says the tool's answer
                    await self._feed(state.ReplyStarted())
                if self.machine.state == "speaking" and self.playback is not None:
                    self.playback.enqueue(pcm, received)
                self._reply_watch.poke()
            case ev.Transcript(role=role, text=text):
                if self._said and self._said[0] != role:
                    self._log_said()
                self._said = (role, (self._said[1] if self._said else "") + text)
                if self.on_transcript is not None:
                    self.on_transcript(role, text)
                self.listeners.notify((role, text))
                if role == "user":
                    await self._feed(state.UserSpeech())
            case ev.Interrupted():
                self._reply_watch.stop()
                self._log_said()
                self.counters["interruptions"] += 1
                self._reply_started = self._discard_reply = False
                await self._feed(state.Interrupted())
            case ev.TurnComplete(usage=usage):
                self._reply_watch.stop()
                self._log_said()
                self.last_error = None  # a turn went through: the last failure is over
                self.turn_no += 1
                self.counters["turns"] += 1
                self._reply_started = self._discard_reply = False
                if usage is not None:
                    self.usage.add(usage)
                if not (self._followup_expected or self._followup_calls):
                    # Before the state moves: a typed turn's conversation may close on
                    # it, and `ask` must hear "complete" first. (It waits for a tool's
                    # answer the model will say next.)
                    self.listeners.notify(None)
                await self._feed(state.TurnComplete())
                if self.machine.state == "speaking":
                    self._drain_task = asyncio.create_task(self._drain())
                if self._end_after_reply and self.machine.state != "speaking":
                    await self._feed(state.Stop())
            case ev.ToolCall(calls=calls):
                await self._feed(state.UserTurnEnded())
                task = asyncio.create_task(self._run_tools(calls))
                self._live_tasks.add(task)
                task.add_done_callback(self._live_tasks.discard)
                for call in calls:
                    self._tool_tasks[call.id] = task
            case ev.ToolCallCancelled(ids=ids):
                # The user interrupted: no photo, no answer for calls nobody wants.
                for call_id in ids:
                    cancelled = self._tool_tasks.pop(call_id, None)
                    if cancelled is not None:
                        cancelled.cancel()
            case ev.SessionLost(reason=reason):
                await self._feed(state.SessionLost(reason))
            case ev.SessionResumed():
                await self._feed(state.SessionResumed())
            case ev.Offline(reason=reason):
                self.last_error = reason
                await self._feed(state.Offline(reason))
            case ev.FatalError(message=message):
                self.last_error = message
                await self._feed(state.Fatal(message))

    def _log_said(self) -> None:
        """Log what one side said as one line: transcripts arrive a few words at a time."""
        said, self._said = self._said, None
        if said is not None and self.config.logging.transcripts:
            log.info(
                "%s: %s",
                *said,
                extra=service.fields(session=str(self.session_no), turn=self.turn_no),
            )

    async def _drain(self) -> None:
        """Wait for the reply to finish playing; False from drain() (the speaker failed or
        was stopped) also ends the wait, or a broken speaker would leave us speaking."""
        assert self.playback is not None
        await self.playback.drain()
        self.post(state.PlaybackDrained())
        if self._end_after_reply:
            self.post(state.Stop())

    async def _run_tools(self, calls: tuple[ev.FunctionCall, ...]) -> None:
        """Run the calls and answer them on the session that made them: an answer for a
        call the service cancelled meanwhile, or for a conversation that ended, is
        dropped (a new session would not know the call id)."""
        live, session_tools = self._live, self._session_tools
        spoken = {"WHEN_IDLE", "INTERRUPT"}
        followup = any(self._session_tools.scheduling_of(call.name) in spoken for call in calls)
        self._followup_calls += followup
        try:
            answers = []
            for call in calls:
                answer = await session_tools.run(DaemonToolContext(self), call.name, call.args)
                log.info("tool %s(%s) -> %s", call.name, call.args, answer)
                if call.id not in self._tool_tasks:
                    log.info("tool %s: the call was cancelled; answer dropped", call.name)
                    continue
                answers.append(
                    (call.id, call.name, answer, self._session_tools.scheduling_of(call.name))
                )
            if answers and live is not None and self._live is live:
                live.send_tool_response(answers)
                if any(scheduling in spoken for *_, scheduling in answers):
                    self._followup_expected = True
            elif answers:
                log.info("tool answers dropped: the conversation ended")
        finally:
            self._followup_calls -= followup
            for call in calls:
                self._tool_tasks.pop(call.id, None)

    # -- camera -----------------------------------------------------------------------

    async def _camera(self, on: bool) -> None:
        if self.camera is None:
            return
        if on and self._camera_task is None and self._live is not None:
            await self.camera.start()
            self._camera_task = asyncio.create_task(self._stream_frames(self._live))
        elif not on and self._camera_task is not None:
            self._camera_task.cancel()
            self._camera_task = None
            await self.camera.stop()

    async def _stream_frames(self, client: LiveClient) -> None:
        async for frame in self.camera.frames():
            client.send_video(frame.jpeg)

    # -- devices and button -------------------------------------------------------------

    def _device_callback(self, name: str) -> Callable[..., None]:
        def changed(device_state: DeviceState, error: Exception | None = None) -> None:
            self.post(Device(name, device_state, str(error) if error else None))

        return changed

    async def _on_device(self, item: Device) -> None:
        """A device that is missing, busy or failed shows `error` until every one is back."""
        if item.state in (DeviceState.MISSING, DeviceState.BUSY, DeviceState.FAILED):
            message = item.message or f"the {item.name} is {item.state}"
            self._device_problems[item.name] = message
            self.last_error = message
            await self._feed(state.Fatal(message))
        elif item.state == DeviceState.OK and item.name in self._device_problems:
            del self._device_problems[item.name]
            if not self._device_problems and self.machine.state == "error":
                self.last_error = None
                await self._feed(state.Reset())

    def _on_button(self, event: Any) -> None:
        gesture, action = str(event.gesture), str(event.action)
        if self.config.behaviour.mode == "hold":
            mapped: state.Event | None = None
            if gesture in ("down", "up"):
                mapped = state.Press() if gesture == "down" else state.Release()
        else:
            mapped = self._action_event(action)
        if mapped is not None:
            self.post(mapped)

    def _action_event(self, action: str) -> state.Event | None:
        if action == "talk":
            return state.Press()
        if action == "stop":
            return state.Stop()
        if action == "mute":
            return state.Mute(on=self.machine.state != "muted")
        return None

    # -- control socket -----------------------------------------------------------------

    def _audio_sent(self) -> tuple[float, int]:
        """Seconds of mic audio this conversation has sent, and the input tokens they
        cost at the Live API's rate for audio."""
        sent = (self.mic.sent_bytes if self.mic else 0) - self._sent_before
        seconds = MicPump.seconds(sent)
        return seconds, round(seconds * AUDIO_TOKENS_PER_S)

    def status(self) -> dict[str, Any]:
        capture, playback = self.capture, self.playback
        sent_s, audio_tokens = self._audio_sent()
        return {
            "state": self.machine.state,
            "session": self.session_no,
            "turn": self.turn_no,
            "connected": self._live is not None,
            "last_error": self.last_error,
            "device_problems": dict(self._device_problems),
            "volume": self.volume.percent if self.volume else None,
            "counters": {
                **self.counters,
                "mic_bytes_sent": self.mic.sent_bytes if self.mic else 0,
                "mic_bytes_dropped_reconnecting": (
                    self._live.dropped_audio_bytes if self._live else 0
                ),
                "capture_overruns": capture.overruns.total if capture else 0,
                "playback_underruns": playback.underruns.total if playback else 0,
            },
            "audio_sent": {"seconds": round(sent_s, 2), "input_tokens": audio_tokens},
            "wake": self.hands_free.status(),
            "echo_cancel": self.echo.status() if self.echo else None,
            "tokens": {
                "conversation": self.usage.conversation.as_dict(),
                "today": self.usage.today().as_dict(),
            },
            "cost": self.budget.status(self.usage.conversation, self.usage.today()),
        }

    def transcript_of_next_turn(self, item: state.Event) -> AsyncIterator[tuple[str, str]]:
        """Post `item` and yield the transcript lines until the turn ends; raises
        `TurnIncomplete` when the conversation ends first (dropped, stopped, an error)."""
        return self.listeners.next_turn(item)

    # -- reload -----------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read the config again; a bad file is reported and the old one kept."""
        path = self.config_path
        try:
            new = config_mod.load(path)
        except config_mod.ConfigError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            return
        except Exception as exc:  # whatever the file does, the running config stays
            log.error(
                "config not reloaded, keeping the running one: %s: %s", type(exc).__name__, exc
            )
            return
        self.post(Call(lambda: self._apply(new)))

    async def _apply(self, new: Config) -> None:
        old, self.config = self.config, new
        self.machine.policy = state.Policy.from_config(new)
        self.handles.remember_s = new.behaviour.remember_s
        self.budget = Budget(new.cost)
        self.earcons = Earcons(new.audio.earcons)
        logging.getLogger().setLevel(new.logging.level.upper())
        if (old.button, old.leds, old.camera) != (new.button, new.leds, new.camera):
            self._close_hardware()
            if self.camera is not None:
                await self.camera.close()
            self._open_hardware()
        if old.mcp != new.mcp:
            replaced, self.toolbox = (
                self.toolbox,
                make_toolbox(new, camera_present=self.camera is not None, timers=self.timers),
            )
            await replaced.close()
            self.toolbox.prepare()
        if old.audio != new.audio:
            log.warning("[audio] changes take effect after `systemctl restart appliance`")
        self.hands_free.reload(new)
        if self.mic is not None and wants_gate(old) != wants_gate(new):
            self.mic.gate = self.hands_free.make_gate()
        log.info("config reloaded from %s", self.config_path or config_mod.DEFAULT_PATH)
        if self.machine.state in ("error", "offline"):
            await self._feed(state.Reset())


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
