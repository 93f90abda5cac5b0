"""The one place that talks to the Gemini Live API, on the google-genai SDK.

What the SDK leaves to us, and this module does:
- `session.receive()` ends after every turn; we call it again, forever, so the
  appliance never goes deaf after its first answer.
- The SDK neither reconnects nor handles `goAway`. We keep the newest session
  resumption handle, and on `goAway` or a dropped connection open a new connection
  with it (exponential backoff with jitter after failures), so the conversation goes on.
  A connection that was set up but broke before it carried a turn (or lasted
  `HEALTHY_S`) is a failure too: after `reconnect_attempts` of them the session ends
  (`Offline`) instead of reconnecting forever.
- Input sent while the connection is down is kept, in order, and sent once a new
  connection is up. Input the old connection took but the service had not consumed is
  sent again: with transparent resumption exactly the messages after the server's
  `last_consumed_client_message_index` (see `SentLog` for how messages are counted),
  without it the realtime input and typed questions the model had not answered yet.
  Nothing the user said while reconnecting is lost, and nothing the service consumed
  is sent twice.
- On `goAway` we move to a new connection before the server cuts the old one: at once,
  or, while a reply is in progress, once it ended and the resumption update covering
  it came (so the reply is not cut off and is not asked for again), but never later
  than the time left minus a margin. The old connection is closed only once the new
  one is up.
- `connect()` waits for the first server frame with no timeout; we bound it.
- Fatal failures (rejected key, unknown model) stop retrying at once and say what to fix.

The rest of the appliance sees only `appliance.live.events`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from google import genai
from google.genai import types
from pydantic import SecretStr

from appliance.audio import dsp
from appliance.config import LiveConfig
from appliance.live import events as ev
from appliance.live.errors import LiveError, LiveFatalError, LiveUnavailableError, classify
from appliance.live.inflow import Inflow
from appliance.live.resend import BACKLOG_AUDIO_BYTES, Outgoing, SentLog
from appliance.live.setup import connect_config
from appliance.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# websockets logs every handshake header at DEBUG, `x-goog-api-key` included: keep its
# loggers at INFO or above even when the appliance (or its embedded emulator) runs with
# debug logging.
_ws_log = logging.getLogger("websockets")
_ws_log.setLevel(max(_ws_log.getEffectiveLevel(), logging.INFO))

AUDIO_MIME = "audio/pcm;rate=16000"
MAX_FRAME_BYTES = 16 * 1024 * 1024
"""websockets' 1 MiB default closes the socket on a large reply frame or a big JPEG."""
REPLY_RATE = 24_000
"""What the speaker plays: the Live API's usual output rate."""
MAX_ERROR_CHARS = 400
"""An error message is cut to this many characters before it is logged or shown."""
TOOL_RESPONSE_NUDGE = bytes(640)
"""20 ms of 16 kHz silence sent after a tool response (see `send_tool_response`)."""
COALESCE_AUDIO_BYTES = 3200
"""When audio queues up, periods are joined into messages of up to 100 ms: fewer frames."""


HEALTHY_S = 30.0
"""A connection that carried a model turn, or lasted this long, was healthy: the failure
count (and so the backoff) starts again after it. One that was set up and broke sooner
counts as a failed attempt, or a server that accepts setup and then fails every
connection would be retried every half second forever, microphone open."""
CLOSE_TIMEOUT_S = 0.5
"""How long a connection's close handshake may take before the socket is just closed."""
GO_AWAY_MARGIN_S = 1.0
"""On goAway we are on a new connection at the latest this long before the cut."""


class LiveClient:
    """A Live conversation that survives goAway and dropped connections.

    Use as `async with LiveClient(...) as live:` (or `await connect()` / `await close()`),
    send with the `send_*` methods, and read `events()`.
    """

    def __init__(
        self,
        config: LiveConfig,
        api_key: SecretStr,
        *,
        automatic_activity_detection: bool = True,
        function_declarations: Sequence[dict[str, Any]] = (),
        resumption_handle: str | None = None,
        on_resumption_handle: Callable[[str], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_attempts: int = 3,
        reconnect_attempts: int = 8,
        backoff_base_s: float = 0.5,
        media_resolution: str | None = None,
    ) -> None:
        self._config = config
        self._api_key = api_key
        self._media_resolution = media_resolution
        self._refused_mimes: set[str | None] = set()
        self._aad = automatic_activity_detection
        self._functions = tuple(function_declarations)
        self._handle = resumption_handle
        self._on_handle = on_resumption_handle
        self._connect_attempts = connect_attempts
        self._reconnect_attempts = reconnect_attempts
        self._backoff_base_s = backoff_base_s
        self._client = genai.Client(
            api_key=api_key.get_secret_value(),
            http_options=_http_options(config, ssl_context),
        )
        self._events: asyncio.Queue[ev.LiveEvent] = asyncio.Queue()
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._outbox_audio_bytes = 0
        self._outbox_ready = asyncio.Event()
        self._pending_usage: ev.Usage | None = None
        self._log = SentLog()
        """What was sent on this connection and not yet consumed (or answered)."""
        self._resend: collections.deque[Outgoing] = collections.deque()
        """Messages of the previous connection to send first, as they are, in order."""
        self._handle_index: int | None = None
        """`last_consumed_client_message_index` of the update that gave `_handle`; None
        when the service sent none (then the old rule: resend what was not answered)."""
        self._transparent = config.session_resumption
        """Ask for transparent resumption; turned off if the SDK refuses to send it."""
        self._replying = False
        self._tool_turn = False
        """A tool call came and its turn has not completed (the turn is not resumable)."""
        self._go_away: asyncio.Future[str] | None = None
        self._go_away_reason: str | None = None
        self._go_away_timer: asyncio.TimerHandle | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._first_connection: asyncio.Future[None] | None = None
        self._closing = False
        self._carried_turn = False
        """The current connection delivered a whole model turn: it is healthy."""
        self._outbox_dropped_bytes = 0
        self._outbox_drop_logged = False
        self.connections = 0
        """How many connections were opened (1 + reconnects)."""
        self.messages_sent: list[int] = []
        """Client messages sent (after setup) on each connection, resends included."""
        self.resent_messages = 0
        """Messages sent again on a new connection because the service had not consumed
        them (with an index) or answered them (without)."""
        self.resent_audio_bytes = 0

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def declare(self, function_declarations: Sequence[dict[str, Any]]) -> None:
        """The functions to set the session up with; before `connect()` (they are
        listed while the client is made, from sources that answer in their own time)."""
        self._functions = tuple(function_declarations)

    async def connect(self) -> None:
        """Open the first connection; raises LiveFatalError or LiveUnavailableError."""
        loop = asyncio.get_running_loop()
        self._first_connection = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name="live-session")
        await self._first_connection

    async def close(self) -> None:
        """End the session; whatever is still queued to send is discarded."""
        self._closing = True
        if self._runner is not None:
            await cancel_and_wait(self._runner)
            self._runner = None
        if self._retiring:  # let a goAway'd connection finish its close handshake
            await asyncio.wait(set(self._retiring), timeout=2.0)
            for task in list(self._retiring):
                await cancel_and_wait(task)
        self._outbox.clear()
        self._outbox_audio_bytes = 0
        self._resend.clear()
        self._log.clear()

    @property
    def resumption_handle(self) -> str | None:
        """The newest handle the server gave; pass it to a later client to resume."""
        return self._handle

    @property
    def transparent(self) -> bool:
        """Whether transparent resumption is asked for (False once the SDK refused it)."""
        return self._transparent

    @property
    def dropped_audio_bytes(self) -> int:
        """Audio lost to the 60 s bounds: queued while offline, or sent and unconfirmed."""
        return self._outbox_dropped_bytes + self._log.dropped_audio_bytes

    # -- sending --------------------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        """Queue 16 kHz 16-bit mono PCM; it is sent in order, across reconnects."""
        if not pcm:
            return
        self._outbox_audio_bytes += len(pcm)
        self._put(Outgoing("audio", pcm))
        while self._outbox_audio_bytes > BACKLOG_AUDIO_BYTES:
            self._drop_oldest_audio()

    def end_audio_stream(self) -> None:
        """The microphone pauses (the voice gate closed): the service flushes what it has
        and may end the turn; sending audio again reopens the stream."""
        self._put(Outgoing("audio_stream_end"))

    def send_video(self, jpeg: bytes) -> None:
        """Queue one JPEG frame."""
        self._put(Outgoing("video", jpeg))

    def activity_start(self) -> None:
        """The user started talking (hold-to-talk: automatic activity detection off)."""
        self._put(Outgoing("activity_start"))

    def activity_end(self) -> None:
        """The user stopped talking (hold-to-talk)."""
        self._put(Outgoing("activity_end"))

    def send_text(self, text: str) -> None:
        """A typed user turn (`appliance ask`); the model answers it in speech."""
        self._put(Outgoing("text", text))

    def send_tool_response(
        self, responses: Sequence[tuple[str, str, dict[str, Any], str | None]]
    ) -> None:
        """Answer a ToolCall: `(call id, function name, response dict, scheduling)` per
        call; scheduling SILENT / WHEN_IDLE / INTERRUPT for a NON_BLOCKING call, None for
        a blocking one.

        20 ms of silence follows it as realtime input: Gemini 3.x was seen to wait for
        more input after a function response before it went on (pipecat), and while the
        reply plays or the voice gate is closed nothing else would come. Half a token."""
        self._put(Outgoing("tool_response", tuple(responses)))
        self.send_audio(TOOL_RESPONSE_NUDGE)

    async def events(self) -> AsyncIterator[ev.LiveEvent]:
        """Every event of the session, in order, until it ends (FatalError or Offline)."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, ev.FatalError | ev.Offline):
                return

    def _put(self, item: Outgoing) -> None:
        self._outbox.append(item)
        self._outbox_ready.set()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._outbox):
            if item.kind == "audio":
                del self._outbox[index]
                self._outbox_audio_bytes -= len(item.payload)
                self._outbox_dropped_bytes += len(item.payload)
                if not self._outbox_drop_logged:  # once per time offline
                    self._outbox_drop_logged = True
                    log.warning(
                        "over a minute of audio queued while the Live API is unreachable: "
                        "the oldest is dropped"
                    )
                return

    # -- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        """Failures since the last healthy connection: a server that sets every
        connection up and then breaks it counts up too, so backoff grows and it ends."""
        connected_before = False
        up = False  # a connection is set up and the app was told so (not yet told lost)
        retiring: contextlib.AsyncExitStack | None = None
        """The connection a goAway told us to leave, closed once the next attempt ended:
        it stays open (idle) through the new handshake instead of leaving a gap."""
        try:
            while not self._closing:
                attempts = self._reconnect_attempts if connected_before else self._connect_attempts
                resumed_with = self._handle
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        try:
                            session = await stack.enter_async_context(self._open())
                        finally:
                            self._retire(retiring)
                            retiring = None
                        self.connections += 1
                        self.messages_sent.append(0)
                        self._outbox_drop_logged = False
                        opened = time.monotonic()
                        self._carried_turn = False
                        if connected_before:
                            self._emit(ev.SessionResumed(resumed=resumed_with is not None))
                        else:
                            connected_before = True
                            self._settle_first(None)
                        up = True
                        try:
                            reason = await self._serve(session)
                        finally:
                            self._prepare_resend()
                            if self._carried_turn or time.monotonic() - opened >= HEALTHY_S:
                                failures = 0
                        if reason is not None:
                            retiring = stack.pop_all()
                except LiveFatalError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:  # every failure is classified: fatal or passing
                    error = classify(exc, model=self._config.model)
                    if error.fatal:
                        self._fail(error)
                        return
                    failures += 1
                    if failures >= attempts:
                        message = f"gave up after {failures} attempts: {error.message}"
                        self._settle_first(LiveUnavailableError(message, error.code))
                        self._emit(ev.Offline(self._redact(message)))
                        return
                    delay = self._backoff(failures)
                    log.warning("%s; retrying in %.1f s", self._redact(error.message), delay)
                    if up:
                        up = False
                        self._emit(ev.SessionLost(self._redact(error.message)))
                    await asyncio.sleep(delay)
                    continue
                if reason is not None:  # goAway: reconnect at once with the handle
                    log.info("the Live API asked us to reconnect (%s)", reason)
        finally:
            self._retire(retiring)
            self._settle_first(LiveUnavailableError("the session was closed"))

    def _retire(self, stack: contextlib.AsyncExitStack | None) -> None:
        """Close a connection we left after goAway, in the background (its close
        handshake must not hold up the new connection)."""
        if stack is None:
            return
        task = asyncio.create_task(stack.aclose(), name="live-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _backoff(self, failures: int) -> float:
        ceiling = min(
            self._config.reconnect_max_delay_s, self._backoff_base_s * 2 ** (failures - 1)
        )
        return random.uniform(ceiling / 2, ceiling)

    def _settle_first(self, error: LiveError | None) -> None:
        future = self._first_connection
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _fail(self, error: LiveError) -> None:
        message = self._redact(error.message)
        log.error("%s", message)
        self._settle_first(LiveFatalError(message, error.code))
        self._emit(ev.FatalError(message, error.code))

    def _redact(self, text: str) -> str:
        """What may reach a log line, an event or `status`: no key, and not a whole bad
        frame (the SDK puts the frame it could not parse in its error: one 15 MB frame
        made a 15 MB log line per retry)."""
        secret = self._api_key.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
        if len(text) > MAX_ERROR_CHARS:
            text = f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} more characters)"
        return text

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Any]:
        """Connect with a bounded wait for setupComplete."""
        manager, session = await self._enter()
        try:
            if session.setup_complete is None:
                raise LiveUnavailableError("the Live API's first message was not setupComplete")
            yield session
        finally:
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

    async def _enter(self) -> tuple[Any, Any]:
        """The SDK's connect, entered: (its context manager, the session).

        google-genai 3.6.1 refuses to send `transparent` to the Gemini Developer API
        (ValueError before anything goes on the wire); then we connect without it, once
        and for all, and resend by the old rule (what the model had not answered).
        """
        while True:
            config = connect_config(
                self._config,
                automatic_activity_detection=self._aad,
                resumption_handle=self._handle,
                function_declarations=self._functions,
                transparent=self._transparent,
                media_resolution=self._media_resolution,
            )
            manager = self._client.aio.live.connect(model=self._config.model, config=config)
            try:
                # Not wait_for: on Python 3.11 it returns the result (here the SDK's
                # ValueError, taken below as "try again") when the caller is cancelled
                # just as the call ends, and the cancellation is lost: SIGTERM then
                # waited out a whole connection attempt, or forever.
                async with asyncio.timeout(self._config.setup_timeout_s):
                    session = await manager.__aenter__()
            except TimeoutError:
                raise LiveUnavailableError(
                    f"no setupComplete from the Live API within {self._config.setup_timeout_s:g} s"
                ) from None
            except ValueError as exc:
                if not self._transparent or "transparent" not in str(exc):
                    raise
                log.info("transparent session resumption is not available: %s", exc)
                self._transparent = False
                continue
            return manager, session

    async def _serve(self, session: Any) -> str | None:
        """Send and receive on one connection until it ends.

        Returns the goAway reason for a planned reconnect; raises on a failure.
        """
        go_away: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._go_away, self._go_away_reason = go_away, None
        receiver = asyncio.create_task(self._receive(session))
        sender = asyncio.create_task(self._send(session))
        waiters: set[asyncio.Future[Any]] = {receiver, sender, go_away}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if go_away in done:
                return go_away.result()
            for task in done:
                task.result()  # raises the failure
            raise LiveUnavailableError("the Live API connection ended")
        finally:
            if self._go_away_timer is not None:
                self._go_away_timer.cancel()
                self._go_away_timer = None
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)

    async def _send(self, session: Any) -> None:
        """Send queued input in order, resends first; number and keep every message."""
        while True:
            item = self._next()
            while item is None:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                item = self._next()
            position = self._log.sent(item)
            self.messages_sent[-1] += 1
            try:
                await self._send_one(session, item)
            except BaseException:
                self._log.failed(position)
                raise

    def _next(self) -> Outgoing | None:
        if self._resend:
            item = self._resend.popleft()
            self.resent_messages += 1
            if item.kind == "audio":
                self.resent_audio_bytes += len(item.payload)
            return item
        return self._take() if self._outbox else None

    @property
    def _indexed(self) -> bool:
        """The newest handle came with a consumed-message index (transparent resumption)."""
        return self._handle_index is not None

    def _answered(self) -> None:
        """The model answered. Without an index that means what was sent before reached
        it and need not be resent; with one, only the index says what was consumed."""
        if not self._indexed:
            self._log.clear()

    def _prepare_resend(self) -> None:
        """The connection ended: what it had not consumed goes out first on the next one.

        Put before anything left over from an earlier resend (it was never sent on this
        connection, so it comes after what was)."""
        items = self._log.take(indexed=self._indexed)
        self._resend.extendleft(reversed(items))
        if self._resend:
            self._outbox_ready.set()
            log.info("resending %d message(s) the Live API had not confirmed", len(self._resend))
        self._replying = self._tool_turn = False

    @property
    def _in_turn(self) -> bool:
        """The model's turn is under way: replying, or waiting on a tool it called."""
        return self._replying or self._tool_turn

    def _take(self) -> Outgoing:
        """Pop the next send; join audio periods queued back to back into one message."""
        item = self._outbox.popleft()
        if item.kind != "audio":
            return item
        chunks = [item.payload]
        size = len(item.payload)
        while self._outbox and self._outbox[0].kind == "audio" and size < COALESCE_AUDIO_BYTES:
            nxt = self._outbox.popleft()
            chunks.append(nxt.payload)
            size += len(nxt.payload)
        self._outbox_audio_bytes -= size
        return item if len(chunks) == 1 else Outgoing("audio", b"".join(chunks))

    @staticmethod
    async def _send_one(session: Any, item: Outgoing) -> None:
        kind, payload = item.kind, item.payload
        if kind == "audio":
            await session.send_realtime_input(audio=types.Blob(data=payload, mime_type=AUDIO_MIME))
        elif kind == "audio_stream_end":
            await session.send_realtime_input(audio_stream_end=True)
        elif kind == "video":
            await session.send_realtime_input(
                video=types.Blob(data=payload, mime_type="image/jpeg")
            )
        elif kind == "activity_start":
            await session.send_realtime_input(activity_start=types.ActivityStart())
        elif kind == "activity_end":
            await session.send_realtime_input(activity_end=types.ActivityEnd())
        elif kind == "text":
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=payload)]),
                turn_complete=True,
            )
        elif kind == "tool_response":
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(
                        id=call_id,
                        name=name,
                        response=response,
                        scheduling=(
                            types.FunctionResponseScheduling(scheduling) if scheduling else None
                        ),
                    )
                    for call_id, name, response, scheduling in payload
                ]
            )
        else:  # pragma: no cover - Outgoing kinds are all listed above
            raise AssertionError(kind)

    async def _receive(self, session: Any) -> None:
        Inflow.install(session, self.connections)  # a flood neither starves the loop nor is parsed
        while True:  # receive() ends after each turn: call it again, forever
            async for message in session.receive():
                self._dispatch(message)

    def _dispatch(self, message: types.LiveServerMessage) -> None:
        now = time.monotonic_ns()
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            # The handle covers what the server consumed so far: a connection resumed with
            # it needs only the messages after its index. Without an index: everything
            # the server took so far (the old rule), so nothing sent before is resent.
            index = update.last_consumed_client_message_index
            if index is None:
                self._log.covered()
            else:
                self._log.consumed(index)
            self._handle, self._handle_index = update.new_handle, index
            if self._on_handle is not None:
                self._on_handle(update.new_handle)
            if self._go_away_reason is not None and not self._in_turn:
                self._switch_connection()  # the handle covers the reply we waited for
        if message.usage_metadata is not None:
            self._pending_usage = usage_from(message.usage_metadata)
        content = message.server_content
        if content is not None:
            self._dispatch_content(content, now)
        if message.tool_call is not None and message.tool_call.function_calls:
            self._answered()
            self._tool_turn = True
            self._emit(
                ev.ToolCall(
                    tuple(
                        ev.FunctionCall(call.id or "", call.name or "", dict(call.args or {}))
                        for call in message.tool_call.function_calls
                    )
                )
            )
        cancelled = message.tool_call_cancellation
        if cancelled is not None and cancelled.ids:
            self._emit(ev.ToolCallCancelled(tuple(cancelled.ids)))
        if message.go_away is not None:
            self._plan_go_away(message.go_away.time_left)

    def _plan_go_away(self, time_left: str | None) -> None:
        """Switch connections now, or after the reply in progress, before the cut.

        Between replies we switch at once: what the old connection had not consumed is
        resent. During a reply, switching would cut it off, and the handle we have is
        from before the user's turn (a transparent resend would ask the same question
        again), so we wait for the reply to end and the resumption update that covers
        it; but never past the time left minus a margin.
        """
        self._go_away_reason = f"goAway, time left {time_left}"
        if not self._in_turn:
            self._switch_connection()
            return
        seconds = _seconds(time_left)
        margin = min(GO_AWAY_MARGIN_S, seconds / 2)
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
        self._go_away_timer = asyncio.get_running_loop().call_later(
            seconds - margin, self._switch_connection
        )

    def _switch_connection(self) -> None:
        future = self._go_away
        if future is not None and not future.done() and self._go_away_reason is not None:
            future.set_result(self._go_away_reason)

    def _dispatch_content(self, content: types.LiveServerContent, now: int) -> None:
        if content.input_transcription is not None and content.input_transcription.text:
            self._emit(ev.Transcript("user", content.input_transcription.text))
        replying = content.model_turn is not None or content.output_transcription is not None
        if replying and not self._replying:
            self._replying = True
            self._answered()
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                if part.inline_data is not None and part.inline_data.data:
                    pcm = self._reply_pcm(part.inline_data.data, part.inline_data.mime_type)
                    if pcm:
                        self._emit(ev.AudioChunk(pcm, now))
                elif part.text and not part.thought:
                    self._emit(ev.Transcript("model", part.text))
        if content.output_transcription is not None and content.output_transcription.text:
            self._emit(ev.Transcript("model", content.output_transcription.text))
        if content.interrupted:
            self._emit(ev.Interrupted())
        if content.turn_complete:
            self._carried_turn = True
            self._emit(ev.TurnComplete(self._pending_usage))
            self._pending_usage = None
        if content.interrupted or content.turn_complete:
            self._replying = self._tool_turn = False
            if self._go_away_reason is not None and not self._config.session_resumption:
                self._switch_connection()  # no update to wait for

    def _reply_pcm(self, data: bytes, mime_type: str | None) -> bytes | None:
        """Reply audio as the speaker takes it (24 kHz S16_LE mono): PCM at another rate
        is resampled (48 kHz played as 24 kHz is half speed); anything else (audio/mpeg
        played as PCM is full-scale noise) is skipped, and said once per session."""
        rate = pcm_rate(mime_type)
        if rate is None:
            if mime_type not in self._refused_mimes:
                self._refused_mimes.add(mime_type)
                log.error(
                    "the Live API sent audio as %r, which cannot be played; skipped", mime_type
                )
            return None
        return dsp.resample(data, rate, REPLY_RATE)

    def _emit(self, event: ev.LiveEvent) -> None:
        self._events.put_nowait(event)


def pcm_rate(mime_type: str | None) -> int | None:
    """The sample rate of a PCM mime type (`audio/pcm;rate=16000`; no rate: 24 kHz), or
    None when it is not 16-bit PCM."""
    if not mime_type:
        return REPLY_RATE
    kind, _, params = mime_type.partition(";")
    if kind.strip().lower() not in ("audio/pcm", "audio/l16"):
        return None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "rate":
            try:
                rate = int(value.strip())
            except ValueError:
                return None
            return rate if 8000 <= rate <= 192_000 else None
    return REPLY_RATE


def usage_from(meta: types.UsageMetadata) -> ev.Usage:
    """Token counts by modality, prompt and response sides kept apart."""
    by_modality: dict[str, int] = {}
    for side, details in (
        ("prompt", meta.prompt_tokens_details),
        ("response", meta.response_tokens_details),
        ("cached", meta.cache_tokens_details),
    ):
        for detail in details or ():
            key = f"{side}:{detail.modality.value if detail.modality else 'UNKNOWN'}"
            by_modality[key] = by_modality.get(key, 0) + (detail.token_count or 0)
    return ev.Usage(
        prompt_tokens=meta.prompt_token_count or 0,
        response_tokens=meta.response_token_count or 0,
        cached_tokens=meta.cached_content_token_count or 0,
        total_tokens=meta.total_token_count or 0,
        thoughts_tokens=meta.thoughts_token_count or 0,
        by_modality=by_modality,
    )


def _seconds(duration: str | None) -> float:
    """`"10s"` / `"1.5s"` (protobuf Duration as JSON) in seconds; unknown: 0."""
    try:
        return max(0.0, float((duration or "0s").removesuffix("s")))
    except ValueError:
        return 0.0


def _http_options(config: LiveConfig, ssl_context: ssl.SSLContext | None) -> types.HttpOptions:
    if ssl_context is None and config.ca_file is not None:
        ssl_context = ssl.create_default_context(cafile=str(config.ca_file))
    client_args: dict[str, Any] = {
        "max_size": MAX_FRAME_BYTES,
        # websockets closes the connection when a pong is 20 s late; the service's pongs
        # can be slower than that under load. A dead link is still found within 80 s.
        "ping_interval": 20,
        "ping_timeout": 60,
        # A hung server never answers the close handshake: websockets would wait 10 s
        # for it on every close, and a stop (or SIGTERM) with it (systemd then kills).
        "close_timeout": CLOSE_TIMEOUT_S,
    }
    if ssl_context is not None:
        client_args["ssl"] = ssl_context
    return types.HttpOptions(
        base_url=config.endpoint,
        api_version=config.api_version,
        async_client_args=client_args,
    )
