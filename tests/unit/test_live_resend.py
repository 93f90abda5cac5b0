"""The Live client's resend bookkeeping, without a network: `SentLog` on its own, and
`LiveClient` driven through fake SDK sessions scripted connection by connection.

Index convention under test (see `SentLog`): per connection, setup 0, the first message
after it 1; an update's `last_consumed_client_message_index` L means messages 1..L of
that connection are in the state its handle stands for, and L+1.. must be resent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.genai import types
from pydantic import SecretStr

from appliance.config import LiveConfig
from appliance.live import events as ev
from appliance.live.client import COALESCE_AUDIO_BYTES, LiveClient
from appliance.live.resend import BACKLOG_AUDIO_BYTES, BACKLOG_VIDEO_FRAMES, Outgoing, SentLog

pytestmark = pytest.mark.timeout(30)

CHUNK = COALESCE_AUDIO_BYTES  # one message each: chunks this big are never joined


def audio(n: int) -> bytes:
    """A distinct 100 ms chunk (its first two bytes say which)."""
    return n.to_bytes(2, "little") + bytes(CHUNK - 2)


# -- SentLog ------------------------------------------------------------------------------


def test_positions_count_every_message_from_1_per_connection() -> None:
    log = SentLog()
    kinds = ["audio", "audio_stream_end", "text", "tool_response", "video", "activity_start"]
    positions = [log.sent(Outgoing(k, b"x" if k in ("audio", "video") else None)) for k in kinds]
    assert positions == [1, 2, 3, 4, 5, 6] and log.position == 6
    log.take(indexed=True)
    assert log.sent(Outgoing("audio", b"y")) == 1  # a new connection counts from 1 again


def test_an_index_forgets_what_was_consumed_and_resends_the_rest_in_order() -> None:
    log = SentLog()
    items = [Outgoing("audio", audio(i)) for i in range(3)] + [
        Outgoing("text", "hi"),
        Outgoing("tool_response", (("fc-1", "f", {}, None),)),
    ]
    for item in items:
        log.sent(item)
    log.consumed(2)
    assert log.positions == [3, 4, 5]
    assert log.audio_bytes == CHUNK
    assert log.take(indexed=True) == items[2:]
    assert len(log) == 0 and log.position == 0 and log.audio_bytes == 0


def test_index_0_keeps_everything_and_a_later_index_never_brings_anything_back() -> None:
    log = SentLog()
    for i in range(4):
        log.sent(Outgoing("audio", audio(i)))
    log.consumed(0)
    assert log.positions == [1, 2, 3, 4]
    log.consumed(3)
    log.consumed(1)  # stale: nothing to undo
    assert log.positions == [4]


def test_an_index_past_what_was_sent_is_taken_as_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = SentLog()
    log.sent(Outgoing("audio", audio(1)))
    log.consumed(5)
    assert len(log) == 0 and "consumed message 5 of 1" in caplog.text


def test_without_an_index_realtime_input_questions_and_failed_sends_are_resent() -> None:
    log = SentLog()
    sent = [
        Outgoing("text", "one"),
        Outgoing("audio", audio(1)),
        Outgoing("tool_response", ()),
        Outgoing("audio_stream_end"),
        Outgoing("text", "two"),
    ]
    for item in sent:
        log.sent(item)
    log.failed(3)
    assert log.take(indexed=False) == sent  # the tool response only because it failed
    for item in sent:
        log.sent(item)
    assert log.take(indexed=False) == [sent[0], sent[1], sent[3], sent[4]]


def test_a_handle_without_an_index_covers_realtime_input_but_not_a_question() -> None:
    """The handle may have been made before the question arrived; only an answer says
    it reached the model."""
    log = SentLog()
    question = Outgoing("text", "what time is it")
    log.sent(Outgoing("audio", audio(1)))
    log.sent(question)
    log.sent(Outgoing("audio_stream_end"))
    log.covered()
    assert log.positions == [2] and log.audio_bytes == 0
    later = Outgoing("audio", audio(2))
    log.sent(later)
    assert log.take(indexed=False) == [question, later]
    log.sent(question)
    log.covered()
    log.clear()  # the model answered
    assert log.take(indexed=False) == []


def test_unconfirmed_audio_is_bounded_oldest_first_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    log = SentLog()
    n = BACKLOG_AUDIO_BYTES // CHUNK
    log.sent(Outgoing("text", "kept"))
    for i in range(n + 3):
        log.sent(Outgoing("audio", audio(i)))
    assert log.audio_bytes == n * CHUNK
    assert log.dropped_audio_bytes == 3 * CHUNK and log.dropped_messages == 3
    assert log.positions[:2] == [1, 5]  # the text stays; audio 2..4 (the oldest) went
    assert caplog.text.count("oldest unconfirmed audio is dropped") == 1
    log.consumed(log.position)  # the service caught up: a later overflow warns again
    for i in range(n + 1):
        log.sent(Outgoing("audio", audio(i)))
    assert caplog.text.count("oldest unconfirmed audio is dropped") == 2


def test_unconfirmed_video_is_bounded_too() -> None:
    log = SentLog()
    for i in range(BACKLOG_VIDEO_FRAMES + 2):
        log.sent(Outgoing("video", bytes([i])))
    assert log.video_frames == BACKLOG_VIDEO_FRAMES and log.dropped_messages == 2
    assert log.positions[0] == 3


# -- LiveClient over fake sessions --------------------------------------------------------


class FakeSession:
    """One connection as the SDK's AsyncSession shows it: sends are recorded as
    (kind, payload); `push()` makes the server say something (or fail)."""

    def __init__(self, number: int, trace: list[str]) -> None:
        self.number = number
        self.trace = trace
        self.setup_complete = types.LiveServerSetupComplete()
        self.sent: list[tuple[str, Any]] = []
        self._incoming: asyncio.Queue[types.LiveServerMessage | BaseException] = asyncio.Queue()

    def push(self, item: types.LiveServerMessage | BaseException) -> None:
        self._incoming.put_nowait(item)

    async def send_realtime_input(self, **kwargs: Any) -> None:
        ((kind, value),) = kwargs.items()
        self.sent.append((kind, value.data if isinstance(value, types.Blob) else None))

    async def send_client_content(self, *, turns: types.Content, turn_complete: bool) -> None:
        assert turns.parts is not None
        self.sent.append(("text", turns.parts[0].text))

    async def send_tool_response(self, *, function_responses: list[Any]) -> None:
        self.sent.append(("tool_response", tuple(r.id for r in function_responses)))

    async def receive(self) -> AsyncIterator[types.LiveServerMessage]:
        while True:
            item = await self._incoming.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.server_content is not None and item.server_content.turn_complete:
                return


class FakeManager:
    def __init__(self, session: FakeSession) -> None:
        self.session = session

    async def __aexit__(self, *exc: object) -> None:
        self.session.trace.append(f"close {self.session.number}")


def update(handle: str, index: int | None) -> types.LiveServerMessage:
    return types.LiveServerMessage(
        session_resumption_update=types.LiveServerSessionResumptionUpdate(
            new_handle=handle, resumable=True, last_consumed_client_message_index=index
        )
    )


def reply_audio() -> types.LiveServerMessage:
    blob = types.Blob(data=b"\x01\x00" * 240, mime_type="audio/pcm;rate=24000")
    return types.LiveServerMessage(
        server_content=types.LiveServerContent(
            model_turn=types.Content(parts=[types.Part(inline_data=blob)])
        )
    )


def turn_complete() -> types.LiveServerMessage:
    return types.LiveServerMessage(server_content=types.LiveServerContent(turn_complete=True))


def go_away(time_left: str) -> types.LiveServerMessage:
    return types.LiveServerMessage(go_away=types.LiveServerGoAway(time_left=time_left))


class Rig:
    """A LiveClient whose connections are FakeSessions, opened one per connect."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **config: Any) -> None:
        self.trace: list[str] = []
        self.sessions: list[FakeSession] = []
        self.opened = asyncio.Event()
        self.handles: list[str | None] = []
        cfg = LiveConfig(model="gemini-3.8-live", **config)
        self.client = LiveClient(cfg, SecretStr("k"), backoff_base_s=0.01)

        async def enter(client: LiveClient) -> tuple[FakeManager, FakeSession]:
            session = FakeSession(len(self.sessions) + 1, self.trace)
            self.handles.append(client.resumption_handle)
            self.sessions.append(session)
            self.trace.append(f"open {session.number}")
            self.opened.set()
            return FakeManager(session), session

        monkeypatch.setattr(LiveClient, "_enter", enter)

    async def connection(self, number: int) -> FakeSession:
        await until(lambda: len(self.sessions) >= number)
        return self.sessions[number - 1]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)


async def test_after_a_drop_exactly_the_messages_after_the_index_are_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        first.push(update("h1", 0))
        for i in range(3):
            client.send_audio(audio(i))
        client.send_text("lights on")
        client.send_tool_response([("fc-1", "lights", {"ok": True}, None)])
        await until(lambda: any(kind == "tool_response" for kind, _ in first.sent))
        await asyncio.sleep(0.05)  # the tool response may bring a nudge of its own
        n = len(first.sent)
        first.push(update("h2", 2))  # audio 0 and 1 were consumed
        await until(lambda: client.resumption_handle == "h2")
        first.push(ConnectionResetError("gone"))
        second = await rig.connection(2)
        await until(lambda: len(second.sent) == n - 2)
        assert second.sent == first.sent[2:]  # audio 2, the text, the tool response...
        assert rig.handles == [None, "h2"]
        assert client.resent_messages == n - 2
        assert client.resent_audio_bytes == sum(
            len(data) for kind, data in second.sent if kind == "audio"
        )
        assert client.messages_sent == [n, n - 2]
        client.send_audio(audio(9))  # new input goes after the resent
        await until(lambda: len(second.sent) == n - 1)
        assert second.sent[-1] == ("audio", audio(9))


async def test_resent_messages_are_renumbered_on_the_new_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        first.push(update("h1", 0))
        for i in range(4):
            client.send_audio(audio(i))
        await until(lambda: len(first.sent) == 4)
        first.push(update("h2", 1))
        await until(lambda: client.resumption_handle == "h2")
        first.push(ConnectionResetError())
        second = await rig.connection(2)
        await until(lambda: len(second.sent) == 3)  # audio 1, 2, 3: positions 1, 2, 3 now
        second.push(update("h3", 2))  # the resumed session consumed audio 1 and 2
        await until(lambda: client.resumption_handle == "h3")
        second.push(ConnectionResetError())
        third = await rig.connection(3)
        await until(lambda: len(third.sent) == 1)
        assert third.sent == [("audio", audio(3))]
        assert rig.handles == [None, "h2", "h3"]


async def test_a_drop_before_any_update_on_the_new_connection_resends_it_all_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        first.push(update("h1", 0))
        for i in range(3):
            client.send_audio(audio(i))
        await until(lambda: len(first.sent) == 3)
        first.push(ConnectionResetError())
        second = await rig.connection(2)
        await until(lambda: len(second.sent) == 3)
        client.send_audio(audio(3))
        await until(lambda: len(second.sent) == 4)
        second.push(ConnectionResetError())  # still h1 (index 0 on connection 1)
        third = await rig.connection(3)
        await until(lambda: len(third.sent) == 4)
        assert third.sent == [("audio", audio(i)) for i in range(4)]
        assert client.resent_messages == 3 + 4


async def test_without_an_index_what_was_not_answered_is_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        client.send_audio(audio(0))
        client.send_text("zero")
        await until(lambda: len(first.sent) == 2)
        first.push(reply_audio())  # answered: neither is resent
        first.push(turn_complete())
        await until(lambda: client._in_turn is False and not client._log)
        client.send_audio(audio(1))
        client.send_text("one")
        await until(lambda: len(first.sent) == 4)
        first.push(update("h1", None))  # no index: the audio before it reached the model
        await until(lambda: client.resumption_handle == "h1")
        client.send_audio(audio(2))
        client.send_text("two")
        client.end_audio_stream()
        await until(lambda: len(first.sent) == 7)
        first.push(ConnectionResetError())
        second = await rig.connection(2)
        await until(lambda: len(second.sent) == 4)
        await asyncio.sleep(0.05)
        assert second.sent == [
            ("text", "one"),  # not answered: the handle may predate it
            ("audio", audio(2)),
            ("text", "two"),
            ("audio_stream_end", None),
        ]


async def test_a_question_left_on_a_go_away_connection_is_asked_once_on_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault matrix's "goAway after setup": setupComplete, a handle, goAway at once,
    and the question the app sent on SessionReady went out on the old connection."""
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        client.send_text("hello")
        await until(lambda: first.sent == [("text", "hello")])
        first.push(update("h1", None))  # made before the question arrived
        first.push(go_away("1.5s"))
        second = await rig.connection(2)
        await until(lambda: second.sent == [("text", "hello")])
        assert rig.handles == [None, "h1"] and client.resent_messages == 1
        second.push(reply_audio())
        second.push(turn_complete())
        second.push(update("h2", None))
        await until(lambda: client.resumption_handle == "h2")
        second.push(go_away("10s"))  # answered there: not asked a third time
        third = await rig.connection(3)
        await asyncio.sleep(0.05)
        assert third.sent == [] and client.resent_messages == 1


async def test_go_away_between_turns_opens_the_new_connection_before_closing_the_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        stream = client.events()
        first = await rig.connection(1)
        first.push(update("h1", 0))
        for i in range(3):
            client.send_audio(audio(i))
        await until(lambda: len(first.sent) == 3)
        first.push(update("h2", 1))
        first.push(go_away("10s"))
        second = await rig.connection(2)
        await until(lambda: len(second.sent) == 2)
        await until(lambda: "close 1" in rig.trace)
        assert rig.trace.index("open 2") < rig.trace.index("close 1")
        assert second.sent == first.sent[1:]
        event = await asyncio.wait_for(anext(stream), 5)
        assert event == ev.SessionResumed(resumed=True)  # no SessionLost: nothing failed


async def test_go_away_during_a_reply_waits_for_its_end_and_the_update_covering_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        first.push(update("h1", 0))
        client.send_audio(audio(1))
        await until(lambda: len(first.sent) == 1)
        first.push(reply_audio())
        first.push(go_away("10s"))
        await asyncio.sleep(0.1)
        assert len(rig.sessions) == 1  # the reply goes on
        first.push(reply_audio())
        first.push(turn_complete())
        await asyncio.sleep(0.1)
        assert len(rig.sessions) == 1  # its handle is not there yet
        first.push(update("h2", 1))
        second = await rig.connection(2)
        assert rig.handles[-1] == "h2"
        await asyncio.sleep(0.05)
        assert second.sent == [] and client.resent_messages == 0


async def test_go_away_during_a_reply_never_waits_past_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch)
    client = rig.client
    async with client:
        first = await rig.connection(1)
        first.push(update("h1", 0))
        client.send_audio(audio(1))
        await until(lambda: len(first.sent) == 1)
        first.push(reply_audio())
        loop = asyncio.get_running_loop()
        start = loop.time()
        first.push(go_away("0.4s"))  # margin: half of it
        second = await rig.connection(2)
        waited = loop.time() - start
        assert 0.15 < waited < 0.4
        await until(lambda: len(second.sent) == 1)
        assert second.sent == [("audio", audio(1))]  # not consumed per h1: resent


async def test_an_sdk_that_refuses_transparent_gets_the_old_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """google-genai 3.6.1 raises ValueError for `transparent` with an API key."""
    client = LiveClient(LiveConfig(model="gemini-3.8-live"), SecretStr("k"))
    configs: list[types.LiveConnectConfig] = []

    class Manager:
        def __init__(self, config: types.LiveConnectConfig) -> None:
            self.config = config

        async def __aenter__(self) -> Any:
            configs.append(self.config)
            resumption = self.config.session_resumption
            if resumption is not None and resumption.transparent:
                raise ValueError("transparent parameter is only supported in Vertex AI")
            return FakeSession(1, [])

    def connect(*, model: str, config: types.LiveConnectConfig) -> Manager:
        return Manager(config)

    monkeypatch.setattr(client._client.aio.live, "connect", connect)
    assert client.transparent
    _manager, session = await client._enter()
    assert isinstance(session, FakeSession) and not client.transparent
    assert [c.session_resumption.transparent for c in configs if c.session_resumption] == [
        True,
        None,
    ]
