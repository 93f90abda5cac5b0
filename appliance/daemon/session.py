"""The Live session of each conversation: opening it, what its events mean, closing it.

`app.py` carries out the state machine's actions; this is the one place that knows what
a conversation's session holds while it lives (the client, its receive task, the tools
it declared and the calls they are running, the camera's stream, the reply in flight)
and what each Live event means for the appliance: a reply chunk goes to the speaker, a
transcript to the log and to a waiting `ask`, a tool call to the toolbox, a turn's end
or a lost connection to the state machine. The appliance around it is reached through
the small `Host` interface, so this module does not import the wiring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from appliance.audio.playback import Playback
from appliance.config import Config
from appliance.daemon import service, state
from appliance.daemon.conversation import MicPump
from appliance.daemon.cost import Budget
from appliance.daemon.inbox import Connected, Item, Live
from appliance.daemon.listeners import TranscriptListeners
from appliance.daemon.memory import HandleStore, UsageBook
from appliance.daemon.quiet_timer import QuietTimer
from appliance.daemon.verbs import TurnIncomplete
from appliance.live import events as ev
from appliance.live.errors import LiveError, LiveFatalError
from appliance.tools.base import ToolContext
from appliance.tools.toolbox import SessionTools, Toolbox

if TYPE_CHECKING:
    from appliance.live.client import LiveClient

log = logging.getLogger("appliance")

VERBATIM = "Say exactly the following words, and nothing else: "
AUDIO_TOKENS_PER_S = 25
"""What the Live API bills a second of input audio."""


class Host(Protocol):
    """What the session needs of the appliance around it (`Appliance`). The parts are
    read at each use: a config reload replaces some of them."""

    config: Config
    api_key: SecretStr | None
    machine: state.StateMachine
    budget: Budget
    toolbox: Toolbox
    playback: Playback | None
    mic: MicPump | None
    camera: Any
    last_error: str | None

    def post(self, item: Item) -> None:
        """Put an item in the inbox."""
        ...

    async def feed(self, event: state.Event) -> None:
        """Carry out an event now, in order with the item being handled."""
        ...

    def end_reason(self) -> str:
        """Why the conversation ends now, in words for a client waiting on its turn."""
        ...


class LiveSession:
    """The appliance's Live session: one at a time, a new one for each conversation."""

    def __init__(
        self,
        host: Host,
        *,
        handles: HandleStore,
        usage: UsageBook,
        listeners: TranscriptListeners,
        tool_context: ToolContext,
        on_transcript: Callable[[str, str], None] | None = None,
    ) -> None:
        self._host = host
        self._handles = handles
        self._usage = usage
        self._listeners = listeners
        self._tool_context = tool_context
        self._on_transcript = on_transcript
        self.number = 0
        """The session (conversation) now; events of an earlier one are ignored."""
        self.turn = 0
        self.counters: dict[str, int] = {"conversations": 0, "turns": 0, "interruptions": 0}
        self.client: LiveClient | None = None
        """The open session's client; None between conversations."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tool_tasks: dict[str, asyncio.Task[Any]] = {}
        """The tool calls running, by call id."""
        self._drain_task: asyncio.Task[None] | None = None
        self.end_after_reply = False
        """A tool asked to end the conversation once the reply has been said."""
        self._reply_started = False
        self._followup_expected = False
        """A tool's answer was sent to be spoken (WHEN_IDLE / INTERRUPT) and the model has
        not started that turn yet: a transcript listener (`ask`) waits for it."""
        self._followup_calls = 0
        """Calls running whose answer the model will speak: `ask` waits for them too."""
        self._tools = SessionTools()
        """The functions this session declared: only those run."""
        self._reply_watch = QuietTimer(
            lambda: self._host.config.behaviour.reply_timeout_s, self._reply_went_quiet
        )
        """A reply that goes quiet without turnComplete for `reply_timeout_s` is taken as
        done (a broken service left the appliance `speaking` with a silent speaker)."""
        self._discard_reply = False
        """The user cut the reply short: drop its remaining chunks until it ends."""
        self._said: tuple[str, str] | None = None
        """Transcript text of the side speaking now, logged once it is done."""
        self._camera_task: asyncio.Task[None] | None = None
        self._sent_before = 0  # mic bytes sent before this conversation

    # -- opening and closing ----------------------------------------------------------

    def open(self) -> None:
        """Start a new conversation's session (it reports back with `Connected`)."""
        host = self._host
        self.number += 1
        self.counters["conversations"] += 1
        self._sent_before = host.mic.sent_bytes if host.mic else 0
        self.end_after_reply = False
        # A reply cut short in the last conversation must not take this one's with it.
        self._reply_started = self._discard_reply = False
        self._followup_expected = False
        number = self.number
        api_key = host.api_key
        if api_key is None:
            message = (
                "no Gemini API key: put it in /etc/appliance/gemini-api-key "
                "(or GEMINI_API_KEY) and restart the appliance"
            )
            host.post(Connected(number, LiveFatalError(message)))
            return
        from appliance.live.client import LiveClient

        cfg = host.config
        try:
            client = LiveClient(
                cfg.live,
                api_key,
                automatic_activity_detection=cfg.behaviour.mode == "toggle",
                resumption_handle=self._handles.load(),
                on_resumption_handle=self._handles.save,
                media_resolution=cfg.camera.media_resolution if cfg.camera.enabled else None,
            )
        except (OSError, ValueError) as exc:  # e.g. an unreadable [live] ca_file
            host.post(Connected(number, LiveFatalError(f"cannot set up the Live client: {exc}")))
            return
        self.client = client
        self._track(self._connect(number, client))

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, number: int, client: LiveClient) -> None:
        host = self._host
        self._tools = SessionTools()
        if host.config.behaviour.tools:
            self._tools = await host.toolbox.open()
        client.declare(self._tools.declarations())
        try:
            await client.connect()
        except LiveError as exc:
            host.post(Connected(number, exc))
            return
        host.post(Connected(number, None))
        async for event in client.events():
            host.post(Live(number, event))

    async def take(self, item: Live | Connected) -> None:
        """Handle what a session reported; what an earlier session reported is stale."""
        if item.session != self.number:
            return
        if isinstance(item, Live):
            await self._on_live(item.event)
        else:
            await self._on_connected(item.error)

    async def _on_connected(self, error: LiveError | None) -> None:
        host = self._host
        if error is None:
            await host.feed(state.SessionReady())
            return
        host.last_error = error.message
        await self.close()
        await host.feed(state.Fatal(error.message) if error.fatal else state.Offline(error.message))

    async def close(self) -> None:
        """End the session (if one is open): its tasks, tools and camera stream too."""
        host = self._host
        self._reply_watch.stop()
        self._log_said()
        # A turn still awaited ends here without its answer: say why (`ask` exits 1).
        self._listeners.notify(TurnIncomplete(host.end_reason()))
        client, self.client = self.client, None
        for task in list(self._tasks):
            task.cancel()
        self.tool_tasks.clear()
        self._followup_expected = False
        session_tools, self._tools = self._tools, SessionTools()
        await session_tools.close()  # e.g. an MCP server's connection
        await self.camera(False)
        if client is None:
            return
        await client.close()
        tally = self._usage.end_conversation()
        sent_s, audio_tokens = self.audio_sent()
        log.info(
            "conversation %d sent %.1f s of microphone audio (%d input tokens); used %s, "
            "costing %s (today %s)",
            self.number,
            sent_s,
            audio_tokens,
            tally.summary() if tally.turns else "no tokens",
            host.budget.describe(tally),
            host.budget.describe(self._usage.today()),
            extra=service.fields(session=str(self.number), audio_sent_s=f"{sent_s:.1f}"),
        )
        if host.config.behaviour.remember_s <= 0:
            self._handles.forget()

    # -- what the appliance sends -----------------------------------------------------

    def send_text(self, text: str, verbatim: bool) -> None:
        """A typed turn (`ask`), or words to say as they are (`say`)."""
        if self.client is not None:
            self.client.send_text(VERBATIM + text if verbatim else text)

    async def stop_reply(self) -> None:
        """Silence the reply now; its chunks still on the way are dropped."""
        if self._reply_started:
            self._discard_reply = True
        self._reply_started = False
        if self._drain_task is not None:
            self._drain_task.cancel()
            self._drain_task = None
        if self._host.playback is not None:
            await self._host.playback.stop()

    def audio_sent(self) -> tuple[float, int]:
        """Seconds of mic audio this conversation has sent, and the input tokens they
        cost at the Live API's rate for audio."""
        mic = self._host.mic
        sent = (mic.sent_bytes if mic else 0) - self._sent_before
        seconds = MicPump.seconds(sent)
        return seconds, round(seconds * AUDIO_TOKENS_PER_S)

    # -- what the session sends -------------------------------------------------------

    async def _on_live(self, event: ev.LiveEvent) -> None:
        host = self._host
        match event:
            case ev.AudioChunk(pcm=pcm, received_ns=received):
                if self._discard_reply:
                    return
                if not self._reply_started:
                    self._reply_started = True
                    self._followup_expected = False  # this turn says the tool's answer
                    await host.feed(state.ReplyStarted())
                if host.machine.state == "speaking" and host.playback is not None:
                    host.playback.enqueue(pcm, received)
                self._reply_watch.poke()
            case ev.Transcript(role=role, text=text):
                if self._said and self._said[0] != role:
                    self._log_said()
                self._said = (role, (self._said[1] if self._said else "") + text)
                if self._on_transcript is not None:
                    self._on_transcript(role, text)
                self._listeners.notify((role, text))
                if role == "user":
                    await host.feed(state.UserSpeech())
            case ev.Interrupted():
                self._reply_watch.stop()
                self._log_said()
                self.counters["interruptions"] += 1
                self._reply_started = self._discard_reply = False
                await host.feed(state.Interrupted())
            case ev.TurnComplete(usage=usage):
                self._reply_watch.stop()
                self._log_said()
                host.last_error = None  # a turn went through: the last failure is over
                self.turn += 1
                self.counters["turns"] += 1
                self._reply_started = self._discard_reply = False
                if usage is not None:
                    self._usage.add(usage)
                if not (self._followup_expected or self._followup_calls):
                    # Before the state moves: a typed turn's conversation may close on
                    # it, and `ask` must hear "complete" first. (It waits for a tool's
                    # answer the model will say next.)
                    self._listeners.notify(None)
                await host.feed(state.TurnComplete())
                if host.machine.state == "speaking":
                    self._drain_task = asyncio.create_task(self._drain())
                if self.end_after_reply and host.machine.state != "speaking":
                    await host.feed(state.Stop())
            case ev.ToolCall(calls=calls):
                await host.feed(state.UserTurnEnded())
                task = asyncio.create_task(self._run_tools(calls))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                for call in calls:
                    self.tool_tasks[call.id] = task
            case ev.ToolCallCancelled(ids=ids):
                # The user interrupted: no photo, no answer for calls nobody wants.
                for call_id in ids:
                    cancelled = self.tool_tasks.pop(call_id, None)
                    if cancelled is not None:
                        cancelled.cancel()
            case ev.SessionLost(reason=reason):
                await host.feed(state.SessionLost(reason))
            case ev.SessionResumed():
                await host.feed(state.SessionResumed())
            case ev.Offline(reason=reason):
                host.last_error = reason
                await host.feed(state.Offline(reason))
            case ev.FatalError(message=message):
                host.last_error = message
                await host.feed(state.Fatal(message))

    def _reply_went_quiet(self) -> None:
        log.warning(
            "the reply stopped for %.0f s without turnComplete; taking the turn as done",
            self._host.config.behaviour.reply_timeout_s,
        )
        self._host.post(Live(self.number, ev.TurnComplete(None)))

    def _log_said(self) -> None:
        """Log what one side said as one line: transcripts arrive a few words at a time."""
        said, self._said = self._said, None
        if said is not None and self._host.config.logging.transcripts:
            log.info(
                "%s: %s",
                *said,
                extra=service.fields(session=str(self.number), turn=self.turn),
            )

    async def _drain(self) -> None:
        """Wait for the reply to finish playing; False from drain() (the speaker failed or
        was stopped) also ends the wait, or a broken speaker would leave us speaking."""
        host = self._host
        assert host.playback is not None
        await host.playback.drain()
        host.post(state.PlaybackDrained())
        if self.end_after_reply:
            host.post(state.Stop())

    async def _run_tools(self, calls: tuple[ev.FunctionCall, ...]) -> None:
        """Run the calls and answer them on the session that made them: an answer for a
        call the service cancelled meanwhile, or for a conversation that ended, is
        dropped (a new session would not know the call id)."""
        live, session_tools = self.client, self._tools
        spoken = {"WHEN_IDLE", "INTERRUPT"}
        followup = any(self._tools.scheduling_of(call.name) in spoken for call in calls)
        self._followup_calls += followup
        try:
            answers = []
            for call in calls:
                answer = await session_tools.run(self._tool_context, call.name, call.args)
                log.info("tool %s(%s) -> %s", call.name, call.args, answer)
                if call.id not in self.tool_tasks:
                    log.info("tool %s: the call was cancelled; answer dropped", call.name)
                    continue
                answers.append((call.id, call.name, answer, self._tools.scheduling_of(call.name)))
            if answers and live is not None and self.client is live:
                live.send_tool_response(answers)
                if any(scheduling in spoken for *_, scheduling in answers):
                    self._followup_expected = True
            elif answers:
                log.info("tool answers dropped: the conversation ended")
        finally:
            self._followup_calls -= followup
            for call in calls:
                self.tool_tasks.pop(call.id, None)

    # -- camera -----------------------------------------------------------------------

    async def camera(self, on: bool) -> None:
        """Stream the camera's frames to the open session, or stop streaming them."""
        camera = self._host.camera
        if camera is None:
            return
        if on and self._camera_task is None and self.client is not None:
            await camera.start()
            self._camera_task = asyncio.create_task(self._stream_frames(self.client))
        elif not on and self._camera_task is not None:
            self._camera_task.cancel()
            self._camera_task = None
            await camera.stop()

    async def _stream_frames(self, client: LiveClient) -> None:
        async for frame in self._host.camera.frames():
            client.send_video(frame.jpeg)
