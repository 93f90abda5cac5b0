"""What the Live client sent and the service may not have consumed, kept to send again
on the next connection (after goAway or a drop): the resend bookkeeping of
`appliance.live.client`, on its own so the rules can be read and tested in one place.

Two rules, by what the service tells us:
- With transparent resumption each handle comes with `last_consumed_client_message_index`:
  exactly the messages after it are resent.
- Without it (google-genai refuses `transparent` with an API key): the realtime input no
  handle covers and the model has not answered, and every typed question the model has
  not answered, are resent; a question is asked again once, not after its answer began.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

BACKLOG_AUDIO_BYTES = 60 * 32000
"""At most this much 16 kHz audio (60 s) is kept while reconnecting; older is dropped."""
REALTIME_KINDS = frozenset({"audio", "audio_stream_end", "video", "activity_start", "activity_end"})
"""Input that is resent on a new connection if no handle since covers it and the model
had not answered it yet (without an index)."""
ASKED_KINDS = frozenset({"text"})
"""A typed question: without an index, resent until the model answered it, whatever
handle came meanwhile (see `SentLog.covered`)."""
BACKLOG_VIDEO_FRAMES = 60
"""At most this many camera frames (about a minute's) are kept for resending."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One queued send; `audio` is set for audio so consecutive periods can be joined."""

    kind: str
    payload: Any = None


@dataclass(slots=True)
class _Sent:
    """A message sent on the current connection, at `position` in its client stream."""

    position: int
    item: Outgoing
    failed: bool = False
    """Its send raised, so it may never have left: resent even when there is no index."""


class SentLog:
    """The client messages the service may not have consumed yet, kept for resending.

    How messages are counted (`last_consumed_client_message_index`): per connection.
    The setup message is 0, the first message after it 1, and every later client frame
    one more, whatever it carries (`realtime_input` audio, video, text, activity or
    audioStreamEnd signals, `client_content`, `tool_response`). The count starts again at
    0 on every connection, a resumed one included; an update's index is a position in
    the stream of the connection it came on, and the handle in the same update stands
    for the session after exactly that message (0: nothing after setup). Why per
    connection: a position in the request stream is the one number both ends can count
    without agreeing on anything else, and a client resuming with a handle kept from an
    earlier run cannot know an older numbering. The service does not document it; the
    emulator counts the same way and the tests pin it.

    So the log holds, in order, each message sent on this connection after the one the
    newest handle covers. At a reconnect they are resent first, in order, as they were
    (not joined with other audio), and get new positions on the new connection. Updates
    trim it; audio beyond `BACKLOG_AUDIO_BYTES` and video beyond `BACKLOG_VIDEO_FRAMES`
    are dropped oldest first (that input is then lost), with one warning per overflow.
    """

    def __init__(
        self,
        audio_limit: int = BACKLOG_AUDIO_BYTES,
        video_limit: int = BACKLOG_VIDEO_FRAMES,
    ) -> None:
        self._entries: collections.deque[_Sent] = collections.deque()
        self._audio_limit = audio_limit
        self._video_limit = video_limit
        self._warned = False
        self.position = 0
        """Position of the last message sent on this connection (0: none after setup)."""
        self.audio_bytes = 0
        self.video_frames = 0
        self.dropped_audio_bytes = 0
        self.dropped_messages = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def positions(self) -> list[int]:
        """The positions kept, oldest first (for tests and logs)."""
        return [entry.position for entry in self._entries]

    def sent(self, item: Outgoing) -> int:
        """`item` goes out as the next message of this connection: number it, keep it.

        Called before the send: a message that may have left must be counted, or every
        later position would be one off from the server's."""
        self.position += 1
        self._entries.append(_Sent(self.position, item))
        if item.kind == "audio":
            self.audio_bytes += len(item.payload)
            while self.audio_bytes > self._audio_limit:
                self._drop_oldest("audio")
        elif item.kind == "video":
            self.video_frames += 1
            while self.video_frames > self._video_limit:
                self._drop_oldest("video")
        return self.position

    def failed(self, position: int) -> None:
        """The send of the message at `position` raised."""
        for entry in reversed(self._entries):
            if entry.position == position:
                entry.failed = True
                return

    def consumed(self, index: int) -> None:
        """The service consumed this connection's messages up to `index`: forget them."""
        if index > self.position:
            log.warning(
                "the Live API says it consumed message %d of %d sent; taking %d",
                index,
                self.position,
                self.position,
            )
            index = self.position
        while self._entries and self._entries[0].position <= index:
            self._forget(self._entries.popleft())
        self._warned = False

    def covered(self) -> None:
        """A handle came without an index: it stands for what the service had taken when
        it was made, so realtime input sent before it is not resent. A typed question is
        kept until the model answers it (`clear`): the handle may have been made while
        the question was on its way (one comes right after setupComplete, before the
        question sent on SessionReady arrives), and a question asked again costs a
        repeat in the context, one lost costs the answer."""
        kept = [entry for entry in self._entries if entry.item.kind in ASKED_KINDS]
        self.clear()
        self._entries.extend(kept)

    def clear(self) -> None:
        """Forget everything kept (without an index: the model answered what came before)."""
        self._entries.clear()
        self.audio_bytes = self.video_frames = 0
        self._warned = False

    def take(self, *, indexed: bool) -> list[Outgoing]:
        """The connection ended: what to resend on the next one, in order.

        With an index, everything kept. Without one: the realtime input and typed
        questions sent since the model last answered (and no handle since covers), and a
        message whose send failed (a tool response is not resent: the handle predates
        its call). The log then starts over for the next connection."""
        resent = REALTIME_KINDS | ASKED_KINDS
        items = [
            entry.item
            for entry in self._entries
            if indexed or entry.failed or entry.item.kind in resent
        ]
        self.clear()
        self.position = 0
        return items

    def _forget(self, entry: _Sent) -> None:
        if entry.item.kind == "audio":
            self.audio_bytes -= len(entry.item.payload)
        elif entry.item.kind == "video":
            self.video_frames -= 1

    def _drop_oldest(self, kind: str) -> None:
        for i, entry in enumerate(self._entries):
            if entry.item.kind == kind:
                del self._entries[i]
                self._forget(entry)
                self.dropped_messages += 1
                if kind == "audio":
                    self.dropped_audio_bytes += len(entry.item.payload)
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "the Live API has not confirmed the input of the last minute: the "
                        "oldest unconfirmed %s is dropped and will not be resent",
                        kind,
                    )
                return
