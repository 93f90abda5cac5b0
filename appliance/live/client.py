"""The one place that talks to the Gemini Live API, on the google-genai SDK.

What the SDK leaves to us, and this module does:
- `session.receive()` ends after every turn; we call it again, forever, so the
  appliance never goes deaf after its first answer.
- The SDK neither reconnects nor handles `goAway`. We keep the newest session
  resumption handle, and on `goAway` or a dropped connection open a new connection
  with it (exponential backoff with jitter after failures), so the conversation goes on.
- Input sent while the connection is down is kept, in order, and sent once a new
  connection is up; input the old connection took but never answered (it may have died
  in a socket buffer) is sent again: nothing the user said while reconnecting is lost.
- On `goAway` a reply in progress is allowed to finish (within the time the server
  gives) before we switch connections, so an answer is not cut off mid-word.
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
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import types
from pydantic import SecretStr

from appliance.config import LiveConfig
from appliance.live import events as ev
from appliance.live.errors import LiveError, LiveFatalError, LiveUnavailableError, classify
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
BACKLOG_AUDIO_BYTES = 60 * 32000
"""At most this much 16 kHz audio (60 s) is kept while reconnecting; older is dropped."""
REALTIME_KINDS = frozenset({"audio", "audio_stream_end", "video", "activity_start", "activity_end"})
"""Input that is resent on a new connection if the model had not answered it yet."""
COALESCE_AUDIO_BYTES = 3200
"""When audio queues up, periods are joined into messages of up to 100 ms: fewer frames."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One queued send; `audio` is set for audio so consecutive periods can be joined."""

    kind: str
    payload: Any = None


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
    ) -> None:
        self._config = config
        self._api_key = api_key
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
        self._outbox: collections.deque[_Outgoing] = collections.deque()
        self._outbox_audio_bytes = 0
        self._outbox_ready = asyncio.Event()
        self._pending_usage: ev.Usage | None = None
        self._unanswered: list[_Outgoing] = []
        """Realtime input sent on this connection since the model last answered."""
        self._unanswered_bytes = 0
        self._replying = False
        self._go_away: asyncio.Future[str] | None = None
        self._go_away_reason: str | None = None
        self._runner: asyncio.Task[None] | None = None
        self._first_connection: asyncio.Future[None] | None = None
        self._closing = False
        self.connections = 0
        """How many connections were opened (1 + reconnects)."""
        self.dropped_audio_bytes = 0
        """Audio dropped because the backlog while reconnecting passed 60 s."""

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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
        self._outbox.clear()
        self._outbox_audio_bytes = 0

    @property
    def resumption_handle(self) -> str | None:
        """The newest handle the server gave; pass it to a later client to resume."""
        return self._handle

    # -- sending --------------------------------------------------------------------------

    def send_audio(self, pcm: bytes) -> None:
        """Queue 16 kHz 16-bit mono PCM; it is sent in order, across reconnects."""
        if not pcm:
            return
        self._outbox_audio_bytes += len(pcm)
        self._put(_Outgoing("audio", pcm))
        while self._outbox_audio_bytes > BACKLOG_AUDIO_BYTES:
            self._drop_oldest_audio()

    def end_audio_stream(self) -> None:
        """The microphone pauses (the voice gate closed): the service flushes what it has
        and may end the turn; sending audio again reopens the stream."""
        self._put(_Outgoing("audio_stream_end"))

    def send_video(self, jpeg: bytes) -> None:
        """Queue one JPEG frame."""
        self._put(_Outgoing("video", jpeg))

    def activity_start(self) -> None:
        """The user started talking (hold-to-talk: automatic activity detection off)."""
        self._put(_Outgoing("activity_start"))

    def activity_end(self) -> None:
        """The user stopped talking (hold-to-talk)."""
        self._put(_Outgoing("activity_end"))

    def send_text(self, text: str) -> None:
        """A typed user turn (`appliance ask`); the model answers it in speech."""
        self._put(_Outgoing("text", text))

    def send_tool_response(self, responses: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        """Answer a ToolCall: `(call id, function name, response dict)` per call."""
        self._put(_Outgoing("tool_response", tuple(responses)))

    async def events(self) -> AsyncIterator[ev.LiveEvent]:
        """Every event of the session, in order, until it ends (FatalError or Offline)."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, ev.FatalError | ev.Offline):
                return

    def _put(self, item: _Outgoing) -> None:
        self._outbox.append(item)
        self._outbox_ready.set()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._outbox):
            if item.kind == "audio":
                del self._outbox[index]
                self._outbox_audio_bytes -= len(item.payload)
                self.dropped_audio_bytes += len(item.payload)
                return

    # -- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        connected_before = False
        try:
            while not self._closing:
                attempts = self._reconnect_attempts if connected_before else self._connect_attempts
                resumed_with = self._handle
                try:
                    async with self._open() as session:
                        failures = 0
                        self.connections += 1
                        if connected_before:
                            self._emit(ev.SessionResumed(resumed=resumed_with is not None))
                        else:
                            connected_before = True
                            self._settle_first(None)
                        try:
                            reason = await self._serve(session)
                        finally:
                            self._replay_unanswered()
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
                    if connected_before and failures == 1:
                        self._emit(ev.SessionLost(self._redact(error.message)))
                    await asyncio.sleep(delay)
                    continue
                if reason is not None:  # goAway: reconnect at once with the handle
                    log.info("the Live API asked us to reconnect (%s)", reason)
        finally:
            self._settle_first(LiveUnavailableError("the session was closed"))

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
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "***") if secret else text

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Any]:
        """Connect with a bounded wait for setupComplete."""
        config = connect_config(
            self._config,
            automatic_activity_detection=self._aad,
            resumption_handle=self._handle,
            function_declarations=self._functions,
        )
        manager = self._client.aio.live.connect(model=self._config.model, config=config)
        try:
            session = await asyncio.wait_for(
                manager.__aenter__(), timeout=self._config.setup_timeout_s
            )
        except TimeoutError:
            raise LiveUnavailableError(
                f"no setupComplete from the Live API within {self._config.setup_timeout_s:g} s"
            ) from None
        try:
            if session.setup_complete is None:
                raise LiveUnavailableError("the Live API's first message was not setupComplete")
            yield session
        finally:
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)

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
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)

    async def _send(self, session: Any) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            item = self._take()
            try:
                await self._send_one(session, item)
            except BaseException:
                self._requeue(item)
                raise
            if item.kind in REALTIME_KINDS:
                self._remember_unanswered(item)

    def _remember_unanswered(self, item: _Outgoing) -> None:
        self._unanswered.append(item)
        if item.kind == "audio":
            self._unanswered_bytes += len(item.payload)
            while self._unanswered_bytes > BACKLOG_AUDIO_BYTES:
                dropped = self._unanswered.pop(0)
                if dropped.kind == "audio":
                    self._unanswered_bytes -= len(dropped.payload)

    def _answered(self) -> None:
        """The model answered: what was sent before reached it and need not be resent."""
        self._unanswered.clear()
        self._unanswered_bytes = 0

    def _replay_unanswered(self) -> None:
        for item in reversed(self._unanswered):
            self._requeue(item)
        if self._unanswered:
            self._outbox_ready.set()
        self._answered()
        self._replying = False

    def _take(self) -> _Outgoing:
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
        return item if len(chunks) == 1 else _Outgoing("audio", b"".join(chunks))

    def _requeue(self, item: _Outgoing) -> None:
        self._outbox.appendleft(item)
        if item.kind == "audio":
            self._outbox_audio_bytes += len(item.payload)

    @staticmethod
    async def _send_one(session: Any, item: _Outgoing) -> None:
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
                    types.FunctionResponse(id=call_id, name=name, response=response)
                    for call_id, name, response in payload
                ]
            )
        else:  # pragma: no cover - _Outgoing kinds are all listed above
            raise AssertionError(kind)

    async def _receive(self, session: Any) -> None:
        while True:  # receive() ends after each turn: call it again, forever
            async for message in session.receive():
                self._dispatch(message)

    def _dispatch(self, message: types.LiveServerMessage) -> None:
        now = time.monotonic_ns()
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            # The handle covers everything the server took so far: a connection resumed
            # with it needs only what is sent from now on.
            self._answered()
            self._handle = update.new_handle
            if self._on_handle is not None:
                self._on_handle(update.new_handle)
        if message.usage_metadata is not None:
            self._pending_usage = usage_from(message.usage_metadata)
        content = message.server_content
        if content is not None:
            self._dispatch_content(content, now)
        if message.tool_call is not None and message.tool_call.function_calls:
            self._answered()
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
        """Switch connections now, or once the reply in progress ends (in time)."""
        self._go_away_reason = f"goAway, time left {time_left}"
        if not self._replying:
            self._switch_connection()
            return
        seconds = _seconds(time_left)
        margin = min(1.0, seconds / 2)
        asyncio.get_running_loop().call_later(seconds - margin, self._switch_connection)

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
                    self._emit(ev.AudioChunk(part.inline_data.data, now))
                elif part.text and not part.thought:
                    self._emit(ev.Transcript("model", part.text))
        if content.output_transcription is not None and content.output_transcription.text:
            self._emit(ev.Transcript("model", content.output_transcription.text))
        if content.interrupted:
            self._emit(ev.Interrupted())
        if content.turn_complete:
            self._emit(ev.TurnComplete(self._pending_usage))
            self._pending_usage = None
        if content.interrupted or content.turn_complete:
            self._replying = False
            if self._go_away_reason is not None:
                self._switch_connection()

    def _emit(self, event: ev.LiveEvent) -> None:
        self._events.put_nowait(event)


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
    }
    if ssl_context is not None:
        client_args["ssl"] = ssl_context
    return types.HttpOptions(
        base_url=config.endpoint,
        api_version=config.api_version,
        async_client_args=client_args,
    )
