"""The appliance's state machine: which state it is in, and what to do on each event.

Plain logic, no I/O, no asyncio, no clock: the wiring feeds it events (a button gesture,
a control-socket verb, something the Live session or the speaker reported) and carries
out the actions it returns, in order. Every call returns a `Transition` that can be
logged as one line, so the journal tells the whole story of a conversation.

The table (T = `toggle` mode, H = `hold` mode; "end" = end the conversation: stop mic
and speaker, close the session; events not listed are ignored and change nothing):

    state       event                        next        notes
    idle        Press                        connecting  mic audio kept (pre-roll first)
    idle        Wake (T)                     connecting  mic audio kept from the wake
                                                         word's end (its question)
    idle        Ask                          connecting  typed turn, mic stays off
    connecting  SessionReady/Resumed         listening   T: stream mic, arm timeout;
                                                         H held: activityStart, stream mic
                                             thinking    H released: activityStart, the
                                                         kept audio, activityEnd; or Ask
    connecting  Release (H)                  connecting  stop keeping audio, keep what is kept
    connecting  Ask                          connecting  the text is sent once ready
    connecting  Press (T)                    idle        end (second press cancels)
    listening   Release (H)                  thinking    activityEnd, mic off
    listening   Press (T) / Timeout (T)      idle        end
    listening   UserSpeech (T)               listening   re-arm the silence timeout
    listening   VoiceActivity (T)            listening   local speech: stop the timeout;
                                                         its end: arm it again
    listening   UserTurnEnded (T)            thinking
    listening   ReplyStarted (T)             speaking    half duplex: mic off
    thinking    ReplyStarted                 speaking
    thinking    TurnComplete                 listening   T (arm timeout) / idle H, Ask
    thinking    Press                        idle (T)    end;  H: listening, new turn
    thinking    Timeout                      idle        no answer in reply_timeout_s:
                                                         end, error chime
    speaking    Press                        listening   barge-in: speaker stops at once
    speaking    Wake (T)                     listening   the same, by voice
    speaking    Interrupted                  listening   T: speaker stops; H: idle
    speaking    TurnComplete                 speaking    wait for the speaker to drain
    speaking    PlaybackDrained (after TC)   listening   T: mic back after the tail;
                                             idle        H, Ask: end
    active      Ask                          thinking    text sent (speaker stopped)
    active      SessionLost                  connecting  speaker stops, mic kept (T/H held);
                                                         the timer runs on (see below)
    connecting  Timeout (session lost)       idle        end, error chime
    any         Stop                         idle        end (muted stays muted)
    any         Mute(on)                     muted       end, capture closed
    muted       Mute(off)                    idle        capture reopened
    muted       Press                        muted       a reminder chime
    any         Offline / Fatal              offline / error   end, error chime
    offline/error  Press/Wake/Ask            connecting  a retry;  Reset -> idle
    idle/muted/offline/error  Ring           ringing     a timer or alarm rings
    ringing     Press/Wake/Stop/RingEnded    (before)    silence it, back where it was
    ringing     Ask / Mute(on)               connecting / muted (silenced first)
    active      Ring                         (same)      the model is told, no ringing

("active" = connecting, listening, thinking, speaking.) A reconnect alone never restarts
the silence timeout: the timer running when the session was lost runs on (from
`speaking`, where none runs, it is armed), and the session coming back does not arm it
again; so a server that breaks every connection cannot keep a conversation open by
being reconnected to. Muted means no mic audio at all:
capture is closed and nothing leaves the device until `Mute(on=False)`.

Mic actions are explicit so privacy can be read off the table: `KeepMic` starts keeping
audio for a session that is not ready yet (pre-roll first), `StreamMic` sends what was
kept and then live audio, `StopMic` stops. Outside `listening`/`thinking`/`connecting`
no mic audio is ever sent, and in half duplex none while `speaking` (plus a tail after).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from appliance.config import Config

State = Literal[
    "idle",
    "connecting",
    "listening",
    "thinking",
    "speaking",
    "muted",
    "offline",
    "error",
    "ringing",
]
STATES: tuple[State, ...] = get_args(State)
ACTIVE: frozenset[State] = frozenset({"connecting", "listening", "thinking", "speaking"})
"""States in which a conversation (and a session) exists."""


# --- events: what happened -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Press:
    """The talk gesture: button press, or `appliance talk`."""


@dataclass(frozen=True, slots=True)
class Wake:
    """The wake word was heard (toggle mode). Starts a conversation like `Press`, keeping
    the audio from `audio_from_ns` on (the question may follow in the same breath); in
    full duplex it also barges in on a reply. Anywhere else it changes nothing."""

    audio_from_ns: int


@dataclass(frozen=True, slots=True)
class Release:
    """The button was let go; ends the turn in `hold` mode, ignored in `toggle`."""


@dataclass(frozen=True, slots=True)
class Stop:
    """End the conversation and silence the speaker (double press, `appliance stop`)."""


@dataclass(frozen=True, slots=True)
class Mute:
    """Mute (`on=True`) or unmute the microphone."""

    on: bool


@dataclass(frozen=True, slots=True)
class Ask:
    """Typed text for the model (`appliance ask`); `verbatim` for `appliance say`."""

    text: str
    verbatim: bool = False


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The Live session is set up and accepts input."""


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The connection dropped; the live client is reconnecting."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """The live client reconnected after `SessionLost`."""


@dataclass(frozen=True, slots=True)
class Offline:
    """No connection could be made; probably passing (network, service busy)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Fatal:
    """Something retrying will not fix (bad key, unknown model, audio device gone)."""

    message: str = ""


@dataclass(frozen=True, slots=True)
class UserSpeech:
    """The user is talking (an input transcript arrived): the silence timer restarts."""


@dataclass(frozen=True, slots=True)
class VoiceActivity:
    """The voice gate on the device heard speech start (`speaking`) or end: the silence
    timeout counts local silence, so it stops while someone speaks and restarts after."""

    speaking: bool


@dataclass(frozen=True, slots=True)
class UserTurnEnded:
    """The server has taken the turn before any audio (toggle mode: e.g. a tool call)."""


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """The first audio chunk of a reply arrived."""


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The server says the user talked over the reply."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The model finished its turn (its audio may still be playing)."""


@dataclass(frozen=True, slots=True)
class PlaybackDrained:
    """The speaker has played everything it was given."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """The silence timer armed by `ArmTimeout` ran out."""


@dataclass(frozen=True, slots=True)
class Ring:
    """A timer or alarm is due; `what` names it ("timer 'pasta' (10 min)")."""

    what: str


@dataclass(frozen=True, slots=True)
class RingEnded:
    """Nobody silenced the ringing within `[timers] ring_max_s`."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Leave `error`/`offline` (e.g. after a config reload)."""


Event = (
    Press
    | Wake
    | Release
    | Stop
    | Mute
    | Ask
    | SessionReady
    | SessionLost
    | SessionResumed
    | Offline
    | Fatal
    | UserSpeech
    | VoiceActivity
    | UserTurnEnded
    | ReplyStarted
    | Interrupted
    | TurnComplete
    | PlaybackDrained
    | Timeout
    | Ring
    | RingEnded
    | Reset
)


# --- actions: what the wiring must do, in order ------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Connect a Live session (resuming the kept handle if there is one)."""


@dataclass(frozen=True, slots=True)
class CloseSession:
    """Close the session; keep or drop its resumption handle as configured."""


@dataclass(frozen=True, slots=True)
class KeepMic:
    """Keep mic audio for the session that is connecting: the pre-roll (if `preroll`), or
    everything captured since `since_ns` (a wake word's question), then everything
    captured from now on (if audio is already kept, continue after it). Nothing is sent
    until `StreamMic`."""

    preroll: bool = True
    since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class StreamMic:
    """Send the kept audio in order, then (if `live`) live mic audio as it comes.

    `preroll`: send the pre-roll ring first (when nothing was kept). `delay_ms`: start
    live audio only after this long, dropping what is captured meanwhile (the
    half-duplex tail: the room still rings with the reply).
    """

    live: bool = True
    preroll: bool = False
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class StopMic:
    """Stop sending mic audio; drop kept audio unless `keep` (a later `StreamMic` sends it)."""

    keep: bool = False


@dataclass(frozen=True, slots=True)
class ActivityStart:
    """Send `activityStart` (hold mode). Must reach the session before the audio after it."""


@dataclass(frozen=True, slots=True)
class ActivityEnd:
    """Send `activityEnd` (hold mode), after the audio before it."""


@dataclass(frozen=True, slots=True)
class SendText:
    """Send typed text as a user turn; `verbatim`: ask the model to say exactly this."""

    text: str
    verbatim: bool = False


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Silence the speaker now and drop queued reply audio."""


@dataclass(frozen=True, slots=True)
class Earcon:
    """Play a chime: `wake`, `done`, `error`, `muted`, `unmuted`."""

    name: Literal["wake", "done", "error", "muted", "unmuted"]


@dataclass(frozen=True, slots=True)
class ArmTimeout:
    """(Re)start the one silence timer; when it runs out, feed `Timeout()`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimeout:
    """Stop the silence timer."""


@dataclass(frozen=True, slots=True)
class Camera:
    """Start or stop streaming camera frames (camera `mode = "stream"` only)."""

    on: bool


@dataclass(frozen=True, slots=True)
class Capture:
    """Open or close the capture device itself (closed while muted: no audio at all)."""

    on: bool


@dataclass(frozen=True, slots=True)
class StartRinging:
    """Ring the timer's tone on the speaker until `StopRinging`."""


@dataclass(frozen=True, slots=True)
class StopRinging:
    """Silence the ringing."""


Action = (
    OpenSession
    | CloseSession
    | KeepMic
    | StreamMic
    | StopMic
    | ActivityStart
    | ActivityEnd
    | SendText
    | StopPlayback
    | Earcon
    | ArmTimeout
    | CancelTimeout
    | Camera
    | Capture
    | StartRinging
    | StopRinging
)


# --- the machine ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings the table depends on (from `[behaviour]` and `[camera]`)."""

    mode: Literal["toggle", "hold"] = "toggle"
    half_duplex: bool = True
    tail_ms: int = 300
    timeout_s: float = 20.0
    reply_timeout_s: float = 30.0
    camera_stream: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        b = config.behaviour
        return cls(
            mode=b.mode,
            half_duplex=b.duplex == "half",
            tail_ms=b.half_duplex_tail_ms,
            timeout_s=b.conversation_timeout_s,
            reply_timeout_s=b.reply_timeout_s,
            camera_stream=config.camera.enabled and config.camera.mode == "stream",
        )


@dataclass(frozen=True, slots=True)
class Memory:
    """What the machine remembers besides the state name."""

    state: State = "idle"
    held: bool = False
    """The talk button is down (hold mode)."""
    voice: bool = False
    """The conversation uses the mic (False: only typed turns)."""
    turn_done: bool = False
    """TurnComplete came while the reply was still playing."""
    pending: Ask | None = None
    """Typed text to send once the session is ready."""
    resume: State = "idle"
    """Where `ringing` goes back to once silenced."""
    lost: bool = False
    """Connecting again after `SessionLost`: the timer armed before runs on."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One step, for the log and for the wiring: `before --event--> after [actions]`."""

    before: State
    event: Event
    after: State
    actions: tuple[Action, ...]

    @property
    def changed(self) -> bool:
        return self.before != self.after or bool(self.actions)

    def __str__(self) -> str:
        acts = ", ".join(_short(a) for a in self.actions)
        return f"{self.before} --{_short(self.event)}--> {self.after} [{acts}]"


def _short(obj: object) -> str:
    """`Earcon(name='wake')` -> `Earcon(wake)`; texts are cut, so a log line stays a line."""
    fields = getattr(obj, "__slots__", ())
    values = []
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, str) and len(value) > 24:
            value = value[:21] + "..."
        values.append(str(value) if not isinstance(value, str) else value)
    name = type(obj).__name__
    return f"{name}({', '.join(values)})" if values else name


class StateMachine:
    """Holds the `Memory` and applies `step`; the only mutable thing here."""

    def __init__(self, policy: Policy | None = None, state: State = "idle") -> None:
        self.policy = policy or Policy()
        self.memory = Memory(state=state)

    @property
    def state(self) -> State:
        return self.memory.state

    def handle(self, event: Event) -> Transition:
        before = self.memory.state
        self.memory, actions = step(self.policy, self.memory, event)
        return Transition(before, event, self.memory.state, actions)


Step = tuple[Memory, tuple[Action, ...]]


def step(p: Policy, m: Memory, ev: Event) -> Step:
    """One transition: the table (`_table`), plus the reply deadline.

    Waiting for the model (`thinking`) is bounded: entering it arms the one timer with
    `reply_timeout_s` (replacing any silence timeout), a reply starting cancels it, and
    `Timeout` there ends the conversation with the error chime. So neither a silent
    service nor a lost message can leave the appliance thinking, mic open, for good.
    """
    mem, acts = _table(p, m, ev)
    if mem.state == "thinking" and m.state != "thinking":
        acts = (
            *(a for a in acts if not isinstance(a, CancelTimeout)),
            ArmTimeout(p.reply_timeout_s),
        )
    elif m.state == "thinking" and mem.state == "speaking":
        acts = (*acts, CancelTimeout())
    return mem, acts


def _table(p: Policy, m: Memory, ev: Event) -> Step:
    """The whole table. Returns the new memory and the actions, in the order to do them."""
    s, toggle = m.state, p.mode == "toggle"
    half = p.half_duplex and m.voice

    def end(to: State = "idle", chime: Earcon | None = Earcon("done")) -> Step:
        acts: list[Action] = [StopMic(), StopPlayback(), CancelTimeout()]
        if p.camera_stream and m.voice:
            acts.append(Camera(False))
        acts.append(CloseSession())
        if chime is not None:
            acts.append(chime)
        return Memory(state=to), tuple(acts)

    def go(state: State, *acts: Action, **changes: object) -> Step:
        return replace(m, state=state, **changes), acts  # type: ignore[arg-type]

    def listen_again(*first: Action) -> Step:
        """Back to listening in toggle mode (after a reply, or barge-in)."""
        mic = (StreamMic(delay_ms=p.tail_ms),) if half else ()
        return go("listening", *first, *mic, ArmTimeout(p.timeout_s), turn_done=False)

    if s == "ringing" or isinstance(ev, Ring | RingEnded):
        return _ringing(m, ev, lambda: _table(p, Memory(state=m.resume), ev))

    # Events that mean the same in every state.
    match ev:
        case Mute(on=True) if s != "muted":
            mem, acts = end("muted", None) if s in ACTIVE else (Memory(state="muted"), ())
            return mem, (*acts, Capture(False), Earcon("muted"))
        case Mute(on=False) if s == "muted":
            return Memory(), (Capture(True), Earcon("unmuted"))
        case _ if s == "muted":
            return m, ((Earcon("muted"),) if isinstance(ev, Press) else ())
        case Stop() if s in ACTIVE:
            return end()
        case Stop() | Reset() if s in ("offline", "error"):
            return Memory(), ()
        case Offline() if s in ACTIVE:
            return end("offline", Earcon("error"))
        case Fatal():
            return end("error", Earcon("error")) if s in ACTIVE else go("error", Earcon("error"))
        case Ask() if s in ("listening", "thinking", "speaking"):
            stop: tuple[Action, ...] = (StopPlayback(),) if s == "speaking" else ()
            if s == "listening" and not toggle:  # the spoken turn ends where the text starts
                stop = (ActivityEnd(), StopMic())
            return go("thinking", *stop, CancelTimeout(), SendText(ev.text, ev.verbatim))
        case SessionLost() if s in ("listening", "thinking", "speaking"):
            if not m.voice or not (toggle or m.held):
                return end(chime=Earcon("error"))
            keep = KeepMic(preroll=False)  # what was before has been sent already
            # The timer runs on through the reconnect; speaking has none: arm it.
            timer = (ArmTimeout(p.timeout_s),) if s == "speaking" and toggle else ()
            return go("connecting", StopPlayback(), *timer, keep, turn_done=False, lost=True)

    match s, ev:
        # idle, offline, error: start a conversation.
        case (("idle" | "offline" | "error"), Press()):
            return Memory("connecting", held=True, voice=True), (
                Earcon("wake"),
                KeepMic(),
                OpenSession(),
            )
        case (("idle" | "offline" | "error"), Wake()) if toggle:
            return Memory("connecting", voice=True), (
                Earcon("wake"),
                KeepMic(since_ns=ev.audio_from_ns),
                OpenSession(),
            )
        case (("idle" | "offline" | "error"), Ask()):
            return Memory("connecting", pending=ev), (OpenSession(),)

        # connecting: the session comes up.
        case "connecting", SessionReady() | SessionResumed():
            cam = (Camera(True),) if p.camera_stream and m.voice else ()
            text = (SendText(m.pending.text, m.pending.verbatim),) if m.pending else ()
            if not m.voice:
                return go("thinking", *text, pending=None, lost=False)
            if toggle:
                if text:
                    return go("thinking", *cam, StreamMic(), *text, pending=None, lost=False)
                timer = () if m.lost else (ArmTimeout(p.timeout_s),)  # a reconnect: runs on
                return go("listening", *cam, StreamMic(), *timer, lost=False)
            if m.held:
                acts = (ActivityStart(), StreamMic())
                return go("listening", *cam, *acts, pending=None, lost=False)
            acts = (ActivityStart(), StreamMic(live=False), ActivityEnd(), StopMic(), *text)
            return go("thinking", *cam, *acts, pending=None, lost=False)
        case "connecting", Timeout() if m.lost:
            return end(chime=Earcon("error"))  # the session did not come back in time
        case "connecting", Ask():
            return go("connecting", pending=ev)
        case "connecting", Press() if toggle:
            return end()
        case "connecting", Press():
            return go("connecting", KeepMic(), held=True, voice=True)
        case "connecting", Release() if not toggle and m.held:
            return go("connecting", StopMic(keep=True), held=False)

        # listening
        case "listening", Release() if not toggle:
            return go("thinking", ActivityEnd(), StopMic(), held=False)
        case "listening", Press() | Timeout() if toggle:
            return end()
        case "listening", UserSpeech() if toggle:
            return go("listening", ArmTimeout(p.timeout_s))
        case "listening", VoiceActivity(speaking=speaking) if toggle:
            return go("listening", CancelTimeout() if speaking else ArmTimeout(p.timeout_s))
        case "listening", UserTurnEnded() if toggle:
            return go("thinking", CancelTimeout())
        case "listening", ReplyStarted() if toggle:
            return go("speaking", CancelTimeout(), *((StopMic(),) if half else ()))

        # thinking
        case "thinking", ReplyStarted():
            return go("speaking", *((StopMic(),) if half and toggle else ()))
        case "thinking", TurnComplete():
            return listen_again() if toggle and m.voice else end(chime=None)
        case "thinking", Press() if toggle:
            return end()
        case "thinking", Press():
            return go("listening", ActivityStart(), StreamMic(preroll=True), held=True, voice=True)
        case "thinking", Interrupted() if toggle and m.voice:
            return listen_again()
        case "thinking", Timeout():
            return end(chime=Earcon("error"))

        # speaking
        case "speaking", Press() if toggle and m.voice:
            return listen_again(StopPlayback())
        case "speaking", Wake() if toggle and m.voice:
            # Barge-in by voice. The wake word only reaches here while the speaker plays
            # when it can be heard over it (full duplex, or the echo cancelled).
            return listen_again(StopPlayback())
        case "speaking", Press() if toggle:  # a typed conversation becomes a spoken one
            acts = (StopPlayback(), StreamMic(), ArmTimeout(p.timeout_s))
            return go("listening", *acts, voice=True, turn_done=False)
        case "speaking", Press():
            acts = (StopPlayback(), ActivityStart(), StreamMic())
            return go("listening", *acts, held=True, voice=True, turn_done=False)
        case "speaking", Release():
            return go("speaking", held=False)
        case "speaking", Interrupted():
            return listen_again(StopPlayback()) if toggle and m.voice else end(chime=None)
        case "speaking", TurnComplete():
            return go("speaking", turn_done=True)
        case "speaking", PlaybackDrained() if m.turn_done:
            return listen_again() if toggle and m.voice else end(chime=None)

        # held-button bookkeeping wherever nothing else happens
        case _, Release() if m.held:
            return go(s, held=False)
    return m, ()


def _ringing(m: Memory, ev: Event, after_silencing: Callable[[], Step]) -> Step:
    """A timer or alarm: it rings where nothing else is going on, and where a
    conversation is open the model is told instead (it can say so between sentences;
    a beep over its voice would be heard by neither). While ringing, the talk gesture,
    the wake word and `stop` only silence it; a typed turn or a mute silence it and then
    do what they do."""
    s = m.state
    what = getattr(ev, "what", "")
    tell = f"(Automatic notice, not from the user: the {what} is due now. Tell the user.)"
    match s, ev:
        case "ringing", Ring():
            return m, ()
        case "ringing", Press() | Wake() | Stop() | RingEnded():
            return Memory(state=m.resume), (StopRinging(),)
        case "ringing", Ask() | Mute() | Fatal():
            mem, acts = after_silencing()
            return mem, (StopRinging(), *acts)
        case "ringing", Reset() if m.resume in ("offline", "error"):
            return replace(m, resume="idle"), ()
        case "ringing", _:
            return m, ()
        case (("idle" | "muted" | "offline" | "error"), Ring()):
            return Memory(state="ringing", resume=s), (StartRinging(),)
        case (("listening" | "thinking" | "speaking"), Ring()):
            return m, (SendText(tell),)
        case "connecting", Ring() if m.pending is None:
            return replace(m, pending=Ask(tell)), ()
    return m, ()
