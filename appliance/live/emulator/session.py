"""One WebSocket connection of the emulated Live service: setup, turns, replies, faults.

The receive loop handles client frames in order and never blocks on a reply: the reply
runs as its own task, paced like the real service (faster than real time), so that
speech or `activityStart` arriving during it can interrupt it with `interrupted`, as the
service does. Conversation state (turn count, transcript) lives in a `Conversation`
that session resumption can carry to a later connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..models import rules_for
from . import protocol as p
from .models import blocking_functions, scheduling_of, setup_rejection
from .recorder import Record, Recorder, Sent
from .scenario import Fault, FaultKind, Reply, Scenario
from .speech import OUTPUT_RATE, speak
from .vad import EnergyDetector, Vad

log = logging.getLogger(__name__)

AUDIO_TOKENS_PER_S = 32
MAX_HANDLES = 1000
"""Handles kept for resuming (the oldest are forgotten: the client then starts afresh)."""
BAD_KEY_REASON = "API key not valid. Please pass a valid API key."
MEDIA_CHUNKS_REASON = "realtime_input.media_chunks is deprecated. Use audio, video or text instead."
ACTIVITY_REASON = (
    "Invalid argument: activity_start/activity_end require "
    "realtime_input_config.automatic_activity_detection.disabled = true."
)


@dataclass(slots=True)
class TranscriptEntry:
    """One side of a turn, as the emulator understood it."""

    role: str
    text: str
    interrupted: bool = False


@dataclass(slots=True)
class Conversation:
    """The context that session resumption preserves across connections."""

    id: int
    turns: int = 0
    transcript: list[TranscriptEntry] = field(default_factory=list)
    tokens: int = 0
    """Tokens of the context so far (reported as cached on later turns)."""
    connections: list[int] = field(default_factory=list)
    consumed: list[tuple[int, int]] = field(default_factory=list)
    """The client messages the state is made of, across resumed connections: for each
    connection of the lineage, (its id, the position of the last message consumed)."""
    input: InputState | None = None
    """The input half-taken when the handle was issued (an utterance in progress)."""

    def snapshot(self) -> Conversation:
        return copy.deepcopy(self)


@dataclass(slots=True)
class InputState:
    """Activity detection in progress: part of a resumable session's state, so that an
    utterance cut by a reconnect goes on with the resent rest of it."""

    vad: EnergyDetector
    activity_open: bool
    activity_audio: int
    activity_rate: int


@dataclass(slots=True)
class ConnectionInfo:
    """What the emulator knows about one connection; tests inspect it."""

    id: int
    path: str
    api_version: str
    setup: p.Setup | None = None
    conversation: Conversation | None = None
    resumed_from: str | None = None
    """The handle the client resumed with, if it was known."""
    unknown_handle: str | None = None
    turns: int = 0
    video_frames: int = 0
    interruptions: int = 0
    tool_schedulings: list[str] = field(default_factory=list)
    """How each NON_BLOCKING call's answer was taken: SILENT, WHEN_IDLE, INTERRUPT."""
    close_code: int | None = None
    close_reason: str | None = None
    handles: list[str] = field(default_factory=list)
    received: int = 0
    """Client messages after setup that arrived (the last one's position)."""
    consumed: int = 0
    """Position of the last client message this connection consumed."""
    reported: list[int] = field(default_factory=list)
    """`lastConsumedClientMessageIndex` of each update sent (transparent resumption)."""
    resumed_at: tuple[int, int] | None = None
    """(connection, position) the resumed state ended at: what the client resends after."""
    flood_messages: int = 0
    """Useless messages sent by the FLOOD fault."""
    flood_ended_ns: int | None = None
    """When the FLOOD fault's last message went out (`time.monotonic_ns()`)."""


class Hub:
    """State shared by all connections of one emulator (owned by `Emulator`)."""

    def __init__(self, scenario: Scenario, recorder: Recorder, api_key: str) -> None:
        self.scenario = scenario
        self.recorder = recorder
        self.api_key = api_key
        self.connections: list[ConnectionInfo] = []
        self.conversations: list[Conversation] = []
        self.handles: dict[str, Conversation] = {}
        self.frozen: set[Session] = set()
        """Hung connections (FREEZE): aborted when the emulator stops."""
        self._handle_seq = 0

    def new_conversation(self) -> Conversation:
        conv = Conversation(id=len(self.conversations) + 1)
        self.conversations.append(conv)
        return conv

    def issue_handle(self, conv: Conversation) -> str:
        self._handle_seq += 1
        handle = f"emu-{conv.id}-{conv.turns}-{self._handle_seq}"
        self.handles[handle] = conv.snapshot()
        while len(self.handles) > MAX_HANDLES:  # periodic updates: keep memory bounded
            del self.handles[next(iter(self.handles))]
        return handle

    def consumed_records(self, conv: Conversation) -> list[Record]:
        """The client messages `conv`'s state is made of, in order, each once: for every
        connection of its lineage, that connection's messages up to the last it consumed
        (and, for a connection left by resuming, up to the handle resumed with)."""
        records = self.recorder.records
        out: list[Record] = []
        for conn, upto in conv.consumed:
            out.extend(
                r for r in records if r.conn == conn and r.index is not None and 0 < r.index <= upto
            )
        return out

    def resume(self, handle: str) -> Conversation | None:
        """A live copy of the conversation at `handle`, or None if the handle is unknown."""
        saved = self.handles.get(handle)
        if saved is None:
            return None
        conv = saved.snapshot()
        self.conversations.append(conv)
        return conv


class Session:
    """Serves one connection from its setup frame to its close."""

    def __init__(self, hub: Hub, ws: ServerConnection, info: ConnectionInfo, binary: bool):
        self.hub = hub
        self.ws = ws
        self.info = info
        self.binary = binary
        self.scenario: Scenario = hub.scenario
        self.setup = p.Setup(model="")
        self.conv = Conversation(id=0)
        self.vad = EnergyDetector(self.scenario.vad)
        self.activity_open = False
        self.activity_audio = 0
        self.activity_rate = 16000
        self.reply_task: asyncio.Task[None] | None = None
        self.tool_future: asyncio.Future[list[dict[str, Any]]] | None = None
        self.realtime_seen = asyncio.Event()
        self.frames_unbilled = 0  # camera frames since the last usage report
        self.rules = rules_for("")
        self.pending_call_ids: list[str] = []
        self.model_entry: TranscriptEntry | None = None
        self.background: set[asyncio.Task[None]] = set()
        self.since_update = 0
        """Client messages received since the last resumption update."""
        self.handling = False
        """A client message is being acted on: the state is not whole until it is done."""
        self.update_due = False
        self.set_up = asyncio.Event()
        self.heard = asyncio.Event()
        """A client message after setup arrived."""
        self.frozen = False

    # ---- sending -------------------------------------------------------------------

    async def send(self, message: dict[str, Any], audio_bytes: int = 0) -> None:
        if self.frozen:
            return
        text = json.dumps(message, separators=(",", ":"))
        await self.ws.send(text.encode() if self.binary else text)
        kind = "+".join(_kinds(message))
        self.hub.recorder.add_sent(
            Sent(time.monotonic_ns(), self.info.id, kind, audio_bytes, _text_of(message))
        )

    async def close(self, code: int, reason: str) -> None:
        # A close frame's reason is at most 123 bytes (RFC 6455); the service truncates too.
        reason = reason.encode()[:123].decode("utf-8", "ignore")
        self.info.close_code, self.info.close_reason = code, reason
        log.info("connection %d: closing %d %s", self.info.id, code, reason)
        await self.ws.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (the client sees 1006)."""
        self.info.close_code, self.info.close_reason = 1006, "dropped by fault"
        transport = self.ws.transport
        transport.abort()

    # ---- the connection ------------------------------------------------------------

    async def run(self) -> None:
        try:
            first = await self.ws.recv()
            t_ns = time.monotonic_ns()
            message = self._load_and_record(first, t_ns, setup=True)
            self.setup = p.parse_setup(message)
            self.rules = rules_for(self.setup.model)
            if await self._setup_faults():
                return
            await self._start_conversation()
            async for frame in self.ws:
                if self.frozen:
                    break
                await self._handle(frame, time.monotonic_ns())
                if self.info.close_code is not None:
                    break  # a fault ended it: frames already buffered are not consumed
            if self.frozen:  # hung: the connection ends when the client (or stop) aborts it
                await self.ws.wait_closed()
        except p.ProtocolError as exc:
            await self.close(exc.code, exc.reason)
        except ConnectionClosed:
            pass
        finally:
            self.hub.frozen.discard(self)
            await self._cancel_reply()
            for task in list(self.background):
                task.cancel()
            if self.info.close_code is None and self.ws.close_code is not None:
                self.info.close_code = self.ws.close_code
                self.info.close_reason = self.ws.close_reason

    async def _setup_faults(self) -> bool:
        """Check key and model and apply setup-time faults; True when the session ends."""
        sc = self.scenario
        if self.info.api_version == "?" or self.ws.request is None:
            raise p.ProtocolError(p.CLOSE_POLICY, "Unknown endpoint.")
        key = _api_key(self.ws)
        fault = sc.take_fault(self.info.id, None)
        kind = fault.kind if fault else None
        if key != self.hub.api_key or kind is FaultKind.BAD_KEY:
            raise p.ProtocolError(p.CLOSE_INVALID, BAD_KEY_REASON)
        if not sc.model_allowed(self.setup.model) or kind is FaultKind.UNKNOWN_MODEL:
            model = self.setup.model
            name = model if model.startswith("models/") else f"models/{model}"
            raise p.ProtocolError(
                p.CLOSE_POLICY,
                f"{name} is not found for API version {self.info.api_version}, or is not "
                "supported for bidiGenerateContent.",
            )
        rejected = setup_rejection(self.setup.raw, self.rules, self.setup.model)
        if rejected is not None:
            raise p.ProtocolError(p.CLOSE_INVALID, rejected)
        if fault is not None and fault.after_setup_s is not None:
            self._spawn(self._break_after_setup(fault))
            return False
        if kind is FaultKind.INTERNAL:
            raise p.ProtocolError(p.CLOSE_INTERNAL, "Internal error encountered.")
        if kind is FaultKind.DROP:
            self.abort()
            return True
        if kind is FaultKind.NO_SETUP_COMPLETE:
            async for frame in self.ws:  # keep recording what the client sends
                self._load_and_record(frame, time.monotonic_ns())
            return True
        if fault is not None and kind in (FaultKind.MALFORMED, FaultKind.UNKNOWN_MESSAGE):
            await self._send_junk(kind, fault.junk_bytes)
            return False
        if fault is not None and kind is FaultKind.GO_AWAY:
            self._spawn(self._go_away(fault))
        return False

    async def _start_conversation(self) -> None:
        handle = self.setup.resume_handle
        conv = self.hub.resume(handle) if handle else None
        if handle and conv is None:
            # No notes say what the real service does; starting fresh keeps a client
            # usable after the documented 2 h handle lifetime. Recorded for tests.
            self.info.unknown_handle = handle
        elif handle:
            self.info.resumed_from = handle
        self.conv = conv or self.hub.new_conversation()
        self.conv.connections.append(self.info.id)
        if conv is not None:
            self.info.resumed_at = conv.consumed[-1] if conv.consumed else None
            if conv.input is not None:
                state = conv.input
                self.vad, self.activity_open = state.vad, state.activity_open
                self.activity_audio, self.activity_rate = state.activity_audio, state.activity_rate
        self.conv.consumed.append((self.info.id, 0))
        self.info.conversation = self.conv
        self.info.setup = self.setup
        await self.send({"setupComplete": {}})
        self.set_up.set()
        await self._resumption_update()

    async def _resumption_update(self) -> None:
        """A new handle for the state now; with `transparent`, the position of the last
        client message of this connection that state includes (see `_handle`)."""
        if not self.setup.session_resumption:
            return
        if self.handling:  # mid-message (a reply ended meanwhile): send it once taken
            self.update_due = True
            return
        self.update_due = False
        self.since_update = 0
        self.conv.input = InputState(
            self.vad, self.activity_open, self.activity_audio, self.activity_rate
        )
        handle = self.hub.issue_handle(self.conv)
        self.info.handles.append(handle)
        update: dict[str, Any] = {"newHandle": handle, "resumable": True}
        if self.setup.transparent:
            # An int64: proto3's JSON mapping writes it as a string (the SDK reads both).
            update["lastConsumedClientMessageIndex"] = str(self.info.consumed)
            self.info.reported.append(self.info.consumed)
        await self.send({"sessionResumptionUpdate": update})

    # ---- client frames -------------------------------------------------------------

    def _load_and_record(
        self, frame: str | bytes, t_ns: int, setup: bool = False
    ) -> dict[str, Any]:
        raw = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        keep = raw if self.hub.recorder.keep_raw else None
        if not setup:
            self.info.received += 1
        index = 0 if setup else self.info.received
        try:
            message = p.load(frame)
            kind, data, mime = _describe(message, setup)
        except p.ProtocolError:
            self.hub.recorder.add(Record(t_ns, self.info.id, "invalid", {}, raw=keep, index=index))
            raise
        self.hub.recorder.add(
            Record(t_ns, self.info.id, kind, message, data, mime, keep, index=index)
        )
        return message

    async def _handle(self, frame: str | bytes, t_ns: int) -> None:
        """Take one client message. It is consumed once acted on (audio fed to the
        activity detector, a turn or tool response taken, a frame counted): from then on
        the state a new handle stands for includes it, and `info.consumed` is its
        position in this connection's stream (setup 0, the first message after it 1),
        the `lastConsumedClientMessageIndex` a transparent update reports. Every frame
        counts, also one the emulator ignores. The count starts at 0 on each connection,
        a resumed one too; `Conversation.consumed` ties the connections together."""
        message = self._load_and_record(frame, t_ns)
        self.heard.set()
        if await self._message_fault():
            return
        self.handling = True
        try:
            await self._take(message)
        finally:
            self.handling = False
        self.info.consumed = self.info.received
        self.conv.consumed[-1] = (self.info.id, self.info.consumed)
        every = self.scenario.update_every_messages
        periodic = self.setup.transparent and every > 0 and self.since_update >= every
        if self.update_due or (periodic and not self._in_turn()):
            await self._resumption_update()

    def _in_turn(self) -> bool:
        """The model's turn is under way (not resumable: the service sends no handle)."""
        reply = self.reply_task
        return (reply is not None and not reply.done()) or self.tool_future is not None

    async def _message_fault(self) -> bool:
        """Apply a fault aimed at this message (`Fault.at_message`); True when the
        connection ended before consuming it."""
        self.since_update += 1
        fault = self.scenario.take_fault(self.info.id, None, self.info.received)
        if fault is None:
            return False
        if fault.kind is FaultKind.DROP:
            self.abort()
            return True
        if fault.kind is FaultKind.INTERNAL:
            await self.close(p.CLOSE_INTERNAL, "Internal error encountered.")
            return True
        if fault.kind is FaultKind.GO_AWAY:
            self._spawn(self._go_away(fault))
        return False

    async def _take(self, message: dict[str, Any]) -> None:
        """Act on one client message (after setup)."""
        msg = p.parse(message)
        if isinstance(msg, p.RealtimeInput):
            await self._realtime(msg)
        elif isinstance(msg, p.ClientContent):
            for text in msg.texts:
                self.conv.transcript.append(TranscriptEntry("user", text))
            if msg.turn_complete:
                heard = " ".join(msg.texts)
                await self._user_turn_done(heard, 0.0, text=heard, record=False)
        elif (
            isinstance(msg, p.ToolResponse)
            and self.tool_future is not None
            and not self.tool_future.done()
        ):
            self.realtime_seen.clear()  # (the stall fault waits for input after this)
            self.tool_future.set_result(list(msg.responses))

    async def _realtime(self, msg: p.RealtimeInput) -> None:
        self.realtime_seen.set()
        aad = self.setup.automatic_activity_detection
        strict = self.scenario.strict_activity
        if msg.media_chunks:
            if not self.scenario.accept_media_chunks:
                raise p.ProtocolError(p.CLOSE_INVALID, MEDIA_CHUNKS_REASON)
            for blob in msg.media_chunks:
                if blob.mime_type.startswith("audio/"):
                    await self._realtime(p.RealtimeInput(audio=blob))
            return
        if msg.audio is not None:
            rate = p.rate_of(msg.audio.mime_type)
            if aad:
                if rate != self.vad.rate:
                    self.vad = EnergyDetector(self.scenario.vad, rate)
                for event in self.vad.feed(msg.audio.data):
                    if event is Vad.SPEECH_START:
                        await self._interrupt()
                    else:
                        await self._speech_done(self.vad.speech_ms / 1000)
            elif self.activity_open:
                self.activity_audio += len(msg.audio.data)
                self.activity_rate = rate
        elif msg.video is not None:
            self.info.video_frames += 1
            self.frames_unbilled += 1
        elif msg.text is not None:
            await self._interrupt()
            await self._user_turn_done(msg.text, 0.0, text=msg.text)
        elif msg.activity_start:
            if aad and strict:
                raise p.ProtocolError(p.CLOSE_INVALID, ACTIVITY_REASON)
            await self._interrupt()
            self.activity_open, self.activity_audio = True, 0
        elif msg.activity_end:
            if aad and strict:
                raise p.ProtocolError(p.CLOSE_INVALID, ACTIVITY_REASON)
            if self.activity_open:
                self.activity_open = False
                await self._speech_done(self.activity_audio / (2 * self.activity_rate))
        elif msg.audio_stream_end and aad and self.vad.in_speech:
            # The client paused its microphone: whatever was being said is complete.
            self.vad.reset()
            await self._speech_done(self.vad.speech_ms / 1000)
        # audioStreamEnd with activity detection off has no meaning: recorded, ignored.

    async def _speech_done(self, seconds: float) -> None:
        await self._user_turn_done(f"({seconds:.1f} s of speech)", seconds)

    async def _user_turn_done(
        self, heard: str, seconds: float, text: str | None = None, record: bool = True
    ) -> None:
        await self._interrupt()
        self.info.turns += 1
        self.conv.turns += 1
        if record:
            self.conv.transcript.append(TranscriptEntry("user", heard))
        self.reply_task = asyncio.create_task(
            self._reply(self.conv.turns, self.info.turns, heard, seconds, text)
        )

    async def _interrupt(self) -> None:
        """Stop the reply in progress (if any) and tell the client, as the service does."""
        task = self.reply_task
        if task is None or task.done():
            return
        await self._cancel_reply()
        self.info.interruptions += 1
        if self.model_entry is not None:
            self.model_entry.interrupted = True
        if self.pending_call_ids:
            await self.send({"toolCallCancellation": {"ids": list(self.pending_call_ids)}})
            self.pending_call_ids = []
        await self.send({"serverContent": {"interrupted": True}})

    async def _cancel_reply(self) -> None:
        task, self.reply_task = self.reply_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ---- the model's turn ----------------------------------------------------------

    async def _reply(
        self, turn: int, conn_turn: int, heard: str, seconds: float, text_in: str | None
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._reply_inner(turn, conn_turn, heard, seconds, text_in)

    async def _reply_inner(
        self, turn: int, conn_turn: int, heard: str, seconds: float, text_in: str | None
    ) -> None:
        sc = self.scenario
        script = sc.reply_for(turn, heard)
        fault = sc.take_fault(self.info.id, conn_turn)
        if self.setup.input_transcription:
            await self.send({"serverContent": {"inputTranscription": {"text": heard}}})
        think = script.think_ms if script.think_ms is not None else sc.think_ms
        await asyncio.sleep(think / 1000)
        if fault is not None and await self._turn_fault(fault):
            return
        prompt_tokens = _prompt_tokens(seconds, text_in, self.setup)
        if script.tool_call is not None:
            call = script.tool_call
            call_id = call.id or f"fc-{turn}"
            self.pending_call_ids = [call_id]
            self.tool_future = asyncio.get_running_loop().create_future()
            await self.send(
                {
                    "toolCall": {
                        "functionCalls": [{"id": call_id, "name": call.name, "args": call.args}]
                    }
                }
            )
            stall = fault is not None and fault.kind is FaultKind.STALL_AFTER_TOOL_RESPONSE
            if call.name not in blocking_functions(self.setup.raw, self.rules):
                # NON_BLOCKING: the model goes on talking; the answer is taken when it
                # comes, and spoken as its `scheduling` says.
                self._spawn(self._answer_later(turn, conn_turn, call.name, script, stall))
                script = Reply(text=script.text or f"Turn {turn}: let me see.", pcm=script.pcm)
            else:
                responses = await self._tool_answer(stall)
                script = _after_tool(turn, call.name, script, responses)
                prompt_tokens += 20
        await self._speak(script, turn, seconds, text_in, prompt_tokens, fault)

    async def _tool_answer(self, stall: bool) -> list[dict[str, Any]]:
        """Wait for the client's function response (and with the stall fault, for some
        realtime input after it, as Gemini 3.x was seen to do)."""
        assert self.tool_future is not None
        responses = await self.tool_future
        if stall:  # cleared as the response arrived: only input after it counts
            await self.realtime_seen.wait()
        self.pending_call_ids = []
        self.tool_future = None
        self.conv.transcript.append(TranscriptEntry("tool", json.dumps(responses)))
        return responses

    async def _answer_later(
        self, turn: int, conn_turn: int, name: str, script: Reply, stall: bool
    ) -> None:
        """A NON_BLOCKING call's answer: SILENT goes into the context only, WHEN_IDLE is
        spoken once the current reply is done, INTERRUPT cuts it and is spoken now."""
        with contextlib.suppress(ConnectionClosed):
            responses = await self._tool_answer(stall)
            level = scheduling_of(responses, self.rules)
            self.info.tool_schedulings.append(level)
            if level == "SILENT":
                return
            current = self.reply_task
            if level == "INTERRUPT":
                await self._cancel_reply()
                await self.send({"serverContent": {"turnComplete": True}})
            elif current is not None and current is not asyncio.current_task():
                await asyncio.gather(current, return_exceptions=True)
            after = _after_tool(turn, name, script, responses)
            self.reply_task = asyncio.create_task(
                self._speak_safely(after, turn, 0.0, None, 20, None)
            )

    async def _speak_safely(self, *args: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._speak(*args)

    async def _speak(
        self,
        script: Reply,
        turn: int,
        seconds: float,
        text_in: str | None,
        prompt_tokens: int,
        fault: Fault | None,
    ) -> None:
        """One model turn: the reply's audio (or text), generationComplete, turnComplete."""
        sc = self.scenario
        text = script.text or _default_text(turn, seconds, text_in)
        self.model_entry = TranscriptEntry("model", text)
        self.conv.transcript.append(self.model_entry)
        drop_at = fault if fault is not None and fault.kind in _MID_REPLY else None
        if "AUDIO" in self.setup.modalities:
            pcm = script.pcm if script.pcm is not None else speak(text, sc.voice, sc.use_espeak)
            finished = await self._send_audio(pcm, text, drop_at)
            response = {
                "modality": "AUDIO",
                "tokenCount": _audio_tokens(len(pcm) / (2 * OUTPUT_RATE)),
            }
        else:
            finished = await self._send_text(text, drop_at)
            response = {"modality": "TEXT", "tokenCount": _text_tokens(text)}
        if not finished or (fault is not None and fault.kind is FaultKind.NO_TURN_COMPLETE):
            return
        await self.send({"serverContent": {"generationComplete": True}})
        usage = self._usage(prompt_tokens, text_in, response)
        await self.send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        self.model_entry = None
        await self._resumption_update()

    async def _turn_fault(self, fault: Fault) -> bool:
        """Apply a fault at the start of a reply; True when the reply must not go on."""
        kind = fault.kind
        if kind is FaultKind.BAD_KEY:
            await self.close(p.CLOSE_INVALID, BAD_KEY_REASON)
            return True
        if kind is FaultKind.UNKNOWN_MODEL:
            await self.close(p.CLOSE_POLICY, f"models/{self.setup.model} is not found.")
            return True
        if kind is FaultKind.NO_SETUP_COMPLETE:
            return True  # the service goes silent for this turn
        if kind in (FaultKind.MALFORMED, FaultKind.UNKNOWN_MESSAGE):
            await self._send_junk(kind, fault.junk_bytes)
            return False
        if kind is FaultKind.GO_AWAY:
            self._spawn(self._go_away(fault))
        if kind is FaultKind.FLOOD:
            await self._flood(fault.flood_s, fault.flood_audio)
        return False

    async def _flood(self, seconds: float, audio: bool) -> None:
        """Send valid messages that carry nothing for `seconds`, as fast as the connection
        takes them. Each send yields to the loop once, so an emulator sharing a loop with
        its client does not starve it (the flood is then as fast as that loop allows)."""
        silence = {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": p.b64encode(bytes(2))}
        useless: tuple[dict[str, Any], ...] = (
            {"serverContent": {}},
            {"serverContent": {"outputTranscription": {"text": ""}}},
        )
        if audio:
            useless += ({"serverContent": {"modelTurn": {"parts": [{"inlineData": silence}]}}},)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.send(useless[self.info.flood_messages % len(useless)])
            self.info.flood_messages += 1
            await asyncio.sleep(0)
        self.info.flood_ended_ns = time.monotonic_ns()
        log.info("connection %d: flooded %d messages", self.info.id, self.info.flood_messages)

    async def _send_junk(self, kind: FaultKind, size: int = 0) -> None:
        if kind is FaultKind.MALFORMED:
            junk = b"x" * size
            await self.ws.send(b'{"serverContent": {"modelTurn": "' + junk)
        else:
            await self.send({"error": {"code": 500, "message": "emulated unknown message"}})

    async def _break_after_setup(self, fault: Fault) -> None:
        """Let the client be set up, then fail the connection as `fault` says."""
        await self.set_up.wait()
        await self.heard.wait()  # the client certainly has its setupComplete by now
        await asyncio.sleep(fault.after_setup_s or 0.0)
        kind = fault.kind
        log.info("connection %d: %s after setup", self.info.id, kind.value)
        if kind is FaultKind.DROP:
            self.abort()
        elif kind is FaultKind.INTERNAL:
            await self.close(p.CLOSE_INTERNAL, "Internal error encountered.")
        elif kind is FaultKind.CLOSE_NORMAL:
            await self.close(1000, "")
        elif kind in (FaultKind.MALFORMED, FaultKind.UNKNOWN_MESSAGE):
            await self._send_junk(kind, fault.junk_bytes)
        elif kind is FaultKind.FREEZE:
            self.freeze()

    def freeze(self) -> None:
        """Hang: read nothing more (no pongs, no close handshake) and send nothing."""
        self.frozen = True
        self.hub.frozen.add(self)
        self.ws.transport.pause_reading()
        if self.reply_task is not None:
            self.reply_task.cancel()

    async def _go_away(self, fault: Fault) -> None:
        await self.send({"goAway": {"timeLeft": f"{fault.time_left_s:g}s"}})
        await asyncio.sleep(fault.time_left_s)
        await self._cancel_reply()
        sc = self.scenario
        await self.close(sc.go_away_close_code, sc.go_away_close_reason)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _mid_reply_fault(self, fault: Fault) -> None:
        if fault.kind is FaultKind.DROP:
            self.abort()
        else:
            await self.close(p.CLOSE_INTERNAL, "Internal error encountered.")

    async def _send_audio(self, pcm: bytes, text: str, fault: Fault | None) -> bool:
        sc = self.scenario
        size = max(2, OUTPUT_RATE * 2 * sc.chunk_ms // 1000)
        chunks = [pcm[i : i + size] for i in range(0, len(pcm), size)] or [b""]
        words = text.split()
        pace = _Pacer(sc.chunk_ms / 1000, sc.realtime_factor)
        said = False
        for i, chunk in enumerate(chunks):
            if fault is not None and i == len(chunks) // 2:
                await self._mid_reply_fault(fault)
                return False
            if self.setup.output_transcription:
                piece = _slice_words(words, i, len(chunks))
                if piece:
                    lead = " " if said else ""
                    said = True
                    await self.send(
                        {"serverContent": {"outputTranscription": {"text": lead + piece}}}
                    )
            part = {
                "inlineData": {
                    "mimeType": sc.output_mime or f"audio/pcm;rate={OUTPUT_RATE}",
                    "data": p.b64encode(chunk),
                }
            }
            await self.send({"serverContent": {"modelTurn": {"parts": [part]}}}, len(chunk))
            await pace.wait(i + 1)
        return True

    async def _send_text(self, text: str, fault: Fault | None) -> bool:
        words = text.split()
        n = max(1, (len(words) + 3) // 4)
        pace = _Pacer(0.05, self.scenario.realtime_factor)
        for i in range(n):
            if fault is not None and i == n // 2:
                await self._mid_reply_fault(fault)
                return False
            piece = ("" if i == 0 else " ") + _slice_words(words, i, n)
            await self.send({"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}})
            await pace.wait(i + 1)
        return True

    def _usage(self, prompt: int, text_in: str | None, response: dict[str, Any]) -> dict[str, Any]:
        cached = self.conv.tokens
        modality = "TEXT" if text_in is not None else "AUDIO"
        details = [{"modality": modality, "tokenCount": prompt}]
        if self.frames_unbilled:  # every frame is billed (3.8), at its media resolution
            image = self.frames_unbilled * _frame_tokens(self.setup.raw)
            details.append({"modality": "IMAGE", "tokenCount": image})
            prompt += image
            self.frames_unbilled = 0
        total_prompt = prompt + cached
        usage: dict[str, Any] = {
            "promptTokenCount": total_prompt,
            "responseTokenCount": response["tokenCount"],
            "totalTokenCount": total_prompt + response["tokenCount"],
            "promptTokensDetails": details,
            "responseTokensDetails": [response],
        }
        if cached:
            usage["cachedContentTokenCount"] = cached
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
        self.conv.tokens = total_prompt + response["tokenCount"]
        return usage


_MID_REPLY = (FaultKind.DROP, FaultKind.INTERNAL)


class _Pacer:
    """Sleeps so that item n goes out at n * period / factor after the start."""

    def __init__(self, period_s: float, factor: float) -> None:
        self.period = period_s / factor if factor > 0 else 0.0
        self.start = time.monotonic()

    async def wait(self, n: int) -> None:
        delay = self.start + n * self.period - time.monotonic()
        await asyncio.sleep(max(0.0, delay))


def _slice_words(words: list[str], i: int, n: int) -> str:
    lo, hi = len(words) * i // n, len(words) * (i + 1) // n
    return " ".join(words[lo:hi])


def _default_text(turn: int, seconds: float, text_in: str | None) -> str:
    if text_in is not None:
        return f"Turn {turn}: you said {text_in}. This is the appliance's local emulator."
    return (
        f"Turn {turn}: I heard {seconds:.1f} seconds of you. "
        "This is the appliance's local emulator."
    )


def _tool_summary(responses: list[dict[str, Any]]) -> str:
    bodies = [r.get("response") for r in responses]
    return json.dumps(bodies[0] if len(bodies) == 1 else bodies, sort_keys=True)


def _audio_tokens(seconds: float) -> int:
    return max(1, round(seconds * AUDIO_TOKENS_PER_S))


def _text_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _frame_tokens(setup: dict[str, Any]) -> int:
    """Tokens a camera frame costs: 64 at LOW media resolution, 256 at MEDIUM or HIGH,
    258 when the setup does not say (the documented video rate)."""
    resolution = str((setup.get("generation_config") or {}).get("media_resolution") or "")
    if resolution.endswith("LOW"):
        return 64
    if resolution.endswith(("MEDIUM", "HIGH")):
        return 256
    return 258


def _prompt_tokens(seconds: float, text_in: str | None, setup: p.Setup) -> int:
    base = _text_tokens(text_in) if text_in is not None else _audio_tokens(seconds)
    return base + (_text_tokens(setup.system_instruction) if setup.system_instruction else 0)


def _api_key(ws: ServerConnection) -> str | None:
    from urllib.parse import parse_qs, urlsplit

    request = ws.request
    if request is None:
        return None
    key = request.headers.get("x-goog-api-key")
    if key:
        return key
    query = parse_qs(urlsplit(request.path).query)
    return query.get("key", [None])[0]


def _after_tool(turn: int, name: str, script: Reply, responses: list[dict[str, Any]]) -> Reply:
    """What the model says with a function's answer."""
    return script.after_tool or Reply(
        text=f"Turn {turn}: the tool {name} answered "
        f"{_tool_summary(responses)}. This is the appliance's local emulator."
    )


def _kinds(message: dict[str, Any]) -> list[str]:
    kinds: list[str] = []
    for key, value in message.items():
        if key == "serverContent" and isinstance(value, dict):
            kinds.extend(f"serverContent.{k}" for k in value)
        else:
            kinds.append(key)
    return kinds


def _text_of(message: dict[str, Any]) -> str | None:
    content = message.get("serverContent")
    if not isinstance(content, dict):
        return None
    for key in ("outputTranscription", "inputTranscription"):
        if key in content:
            return str(content[key].get("text"))
    parts = (content.get("modelTurn") or {}).get("parts") or []
    texts = [str(part["text"]) for part in parts if "text" in part]
    return "".join(texts) if texts else None


def _describe(message: dict[str, Any], setup: bool) -> tuple[str, bytes | None, str | None]:
    """(record kind, decoded bytes, mime type) of a normalised client message."""
    if setup or "setup" in message:
        return "setup", None, None
    rt = message.get("realtime_input")
    if isinstance(rt, dict):
        for key in ("audio", "video"):
            if key in rt:
                blob = rt[key] or {}
                return key, p.b64decode(blob.get("data", "")), blob.get("mime_type")
        if "media_chunks" in rt:
            blobs = [b for b in rt["media_chunks"] or () if isinstance(b, dict)]
            data = b"".join(p.b64decode(b.get("data", "")) for b in blobs)
            mime = blobs[0].get("mime_type") if blobs else None
            return "media_chunks", data, mime or "audio/pcm"
        for key in ("text", "activity_start", "activity_end", "audio_stream_end"):
            if key in rt:
                return key, None, None
        return "other", None, None
    for key in ("client_content", "tool_response"):
        if key in message:
            return key, None, None
    return "other", None, None
