"""The daemon's state machine on its own: every transition, both turn-taking modes.

Each state is reached by a real path of events from `idle` (never by poking memory),
then every event is tried there. Random walks check the privacy rules hold whatever
order events come in.
"""

from __future__ import annotations

import random

import pytest

from appliance.daemon import state as sm
from appliance.daemon.state import (
    ActivityEnd,
    ActivityStart,
    ArmTimeout,
    Ask,
    CancelTimeout,
    Capture,
    CloseSession,
    Earcon,
    Fatal,
    Interrupted,
    KeepMic,
    Mute,
    Offline,
    OpenSession,
    PlaybackDrained,
    Policy,
    Press,
    Release,
    ReplyStarted,
    Reset,
    Ring,
    RingEnded,
    SendText,
    SessionLost,
    SessionReady,
    SessionResumed,
    StartRinging,
    StateMachine,
    Stop,
    StopMic,
    StopPlayback,
    StopRinging,
    StreamMic,
    Timeout,
    TurnComplete,
    UserSpeech,
    UserTurnEnded,
    VoiceActivity,
    Wake,
)

TOGGLE = Policy(mode="toggle", half_duplex=True, tail_ms=300, timeout_s=20.0)
HOLD = Policy(mode="hold", half_duplex=True, tail_ms=300, timeout_s=20.0)

# How to reach each state from idle, per mode.
PATHS: dict[str, list[sm.Event]] = {
    "idle": [],
    "connecting": [Press()],
    "listening": [Press(), SessionReady()],
    "speaking": [Press(), SessionReady(), ReplyStarted()],
    "muted": [Mute(on=True)],
    "offline": [Press(), Offline("no route")],
    "error": [Fatal("bad key")],
    "ringing": [Ring("timer 'tea' (3 min)")],
}
TOGGLE_PATHS = {**PATHS, "thinking": [Press(), SessionReady(), UserTurnEnded()]}
HOLD_PATHS = {
    **PATHS,
    "thinking": [Press(), SessionReady(), Release()],
    "speaking": [Press(), SessionReady(), Release(), ReplyStarted()],
}
ALL_EVENTS: list[sm.Event] = [
    Press(),
    Wake(audio_from_ns=123),
    VoiceActivity(speaking=True),
    VoiceActivity(speaking=False),
    Release(),
    Stop(),
    Mute(on=True),
    Mute(on=False),
    Ask("what time is it"),
    SessionReady(),
    SessionLost("reset"),
    SessionResumed(),
    Offline("down"),
    Fatal("bad key"),
    UserSpeech(),
    UserTurnEnded(),
    ReplyStarted(),
    Interrupted(),
    TurnComplete(),
    PlaybackDrained(),
    Timeout(),
    Ring("alarm at 07:00 (once)"),
    RingEnded(),
    Reset(),
]
END = (StopMic(), StopPlayback(), CancelTimeout(), CloseSession())


def at(state: str, policy: Policy) -> StateMachine:
    machine = StateMachine(policy)
    paths = TOGGLE_PATHS if policy.mode == "toggle" else HOLD_PATHS
    for event in paths[state]:
        machine.handle(event)
    assert machine.state == state
    return machine


def test_paths_reach_every_state() -> None:
    for policy in (TOGGLE, HOLD):
        for state in sm.STATES:
            at(state, policy)


# (state, event) -> (next state, actions), toggle mode.
TOGGLE_TABLE: list[tuple[str, sm.Event, str, tuple[sm.Action, ...]]] = [
    ("idle", Press(), "connecting", (Earcon("wake"), KeepMic(), OpenSession())),
    ("idle", Ask("hi"), "connecting", (OpenSession(),)),
    ("idle", Mute(on=True), "muted", (Capture(False), Earcon("muted"))),
    ("connecting", SessionReady(), "listening", (StreamMic(), ArmTimeout(20.0))),
    ("connecting", SessionResumed(), "listening", (StreamMic(), ArmTimeout(20.0))),
    ("connecting", Press(), "idle", (*END, Earcon("done"))),
    ("connecting", Stop(), "idle", (*END, Earcon("done"))),
    ("connecting", Offline("x"), "offline", (*END, Earcon("error"))),
    ("connecting", Fatal("x"), "error", (*END, Earcon("error"))),
    ("connecting", Mute(on=True), "muted", (*END, Capture(False), Earcon("muted"))),
    ("connecting", SessionLost("x"), "connecting", ()),
    ("connecting", Release(), "connecting", ()),
    ("listening", Press(), "idle", (*END, Earcon("done"))),
    ("listening", Timeout(), "idle", (*END, Earcon("done"))),
    ("listening", UserSpeech(), "listening", (ArmTimeout(20.0),)),
    ("listening", UserTurnEnded(), "thinking", (ArmTimeout(30.0),)),
    ("listening", ReplyStarted(), "speaking", (CancelTimeout(), StopMic())),
    ("listening", Release(), "listening", ()),
    ("listening", Ask("hi"), "thinking", (SendText("hi"), ArmTimeout(30.0))),
    ("listening", SessionLost("x"), "connecting", (StopPlayback(), KeepMic(preroll=False))),
    ("thinking", ReplyStarted(), "speaking", (StopMic(), CancelTimeout())),
    ("thinking", TurnComplete(), "listening", (StreamMic(delay_ms=300), ArmTimeout(20.0))),
    ("thinking", Press(), "idle", (*END, Earcon("done"))),
    ("thinking", Interrupted(), "listening", (StreamMic(delay_ms=300), ArmTimeout(20.0))),
    ("thinking", Timeout(), "idle", (*END, Earcon("error"))),  # no answer in time
    ("speaking", Press(), "listening", (StopPlayback(), StreamMic(delay_ms=300), ArmTimeout(20.0))),
    (
        "speaking",
        Interrupted(),
        "listening",
        (StopPlayback(), StreamMic(delay_ms=300), ArmTimeout(20.0)),
    ),
    ("speaking", TurnComplete(), "speaking", ()),
    ("speaking", PlaybackDrained(), "speaking", ()),  # a gap mid-reply is not the end
    ("speaking", Stop(), "idle", (*END, Earcon("done"))),
    ("speaking", Ask("hi"), "thinking", (StopPlayback(), SendText("hi"), ArmTimeout(30.0))),
    ("speaking", Timeout(), "speaking", ()),
    ("muted", Press(), "muted", (Earcon("muted"),)),
    ("muted", Mute(on=False), "idle", (Capture(True), Earcon("unmuted"))),
    ("muted", Ask("hi"), "muted", ()),
    ("muted", Stop(), "muted", ()),
    ("muted", Fatal("x"), "muted", ()),
    ("offline", Press(), "connecting", (Earcon("wake"), KeepMic(), OpenSession())),
    ("offline", Reset(), "idle", ()),
    ("offline", Stop(), "idle", ()),
    ("error", Press(), "connecting", (Earcon("wake"), KeepMic(), OpenSession())),
    ("error", Ask("hi"), "connecting", (OpenSession(),)),
    ("error", Reset(), "idle", ()),
    ("idle", Fatal("mic gone"), "error", (Earcon("error"),)),
    ("idle", Stop(), "idle", ()),
    ("idle", Timeout(), "idle", ()),
]

HOLD_TABLE: list[tuple[str, sm.Event, str, tuple[sm.Action, ...]]] = [
    ("idle", Press(), "connecting", (Earcon("wake"), KeepMic(), OpenSession())),
    ("connecting", SessionReady(), "listening", (ActivityStart(), StreamMic())),
    ("connecting", Release(), "connecting", (StopMic(keep=True),)),
    ("connecting", Press(), "connecting", (KeepMic(),)),
    ("listening", Release(), "thinking", (ActivityEnd(), StopMic(), ArmTimeout(30.0))),
    ("listening", Press(), "listening", ()),
    ("listening", Timeout(), "listening", ()),
    (
        "listening",
        Ask("hi"),
        "thinking",
        (ActivityEnd(), StopMic(), SendText("hi"), ArmTimeout(30.0)),
    ),
    ("listening", ReplyStarted(), "listening", ()),  # a late chunk of the old reply
    ("listening", SessionLost("x"), "connecting", (StopPlayback(), KeepMic(preroll=False))),
    ("thinking", ReplyStarted(), "speaking", (CancelTimeout(),)),
    ("thinking", TurnComplete(), "idle", END),
    ("thinking", Press(), "listening", (ActivityStart(), StreamMic(preroll=True))),
    ("thinking", SessionLost("x"), "idle", (*END, Earcon("error"))),
    ("speaking", Press(), "listening", (StopPlayback(), ActivityStart(), StreamMic())),
    ("speaking", Interrupted(), "idle", END),
    ("speaking", TurnComplete(), "speaking", ()),
    ("speaking", Release(), "speaking", ()),
    ("muted", Press(), "muted", (Earcon("muted"),)),
    ("offline", Press(), "connecting", (Earcon("wake"), KeepMic(), OpenSession())),
]


def test_a_reconnect_alone_never_rearms_the_silence_timeout() -> None:
    # Found: each reconnect re-armed it, so a server that broke every connection kept
    # the conversation (and the microphone) open for good.
    machine = at("listening", TOGGLE)
    lost = machine.handle(SessionLost("x"))
    assert not any(isinstance(a, CancelTimeout | ArmTimeout) for a in lost.actions)
    back = machine.handle(SessionResumed())
    assert (back.after, back.actions) == ("listening", (StreamMic(),))
    machine.handle(SessionLost("again"))
    timeout = machine.handle(Timeout())  # the first arm ran out while reconnecting
    assert (timeout.after, timeout.actions) == ("idle", (*END, Earcon("error")))


def test_a_session_lost_while_speaking_arms_the_timeout_once() -> None:
    machine = at("speaking", TOGGLE)
    lost = machine.handle(SessionLost("x"))
    assert lost.actions == (StopPlayback(), ArmTimeout(20.0), KeepMic(preroll=False))
    assert machine.handle(SessionResumed()).actions == (StreamMic(),)
    assert machine.handle(SessionReady()).actions == ()  # (listening: nothing to do)


@pytest.mark.parametrize(("state", "event", "after", "actions"), TOGGLE_TABLE, ids=str)
def test_toggle_table(state: str, event: sm.Event, after: str, actions: tuple) -> None:
    machine = at(state, TOGGLE)
    step = machine.handle(event)
    assert (step.before, step.after, step.actions) == (state, after, actions), str(step)


@pytest.mark.parametrize(("state", "event", "after", "actions"), HOLD_TABLE, ids=str)
def test_hold_table(state: str, event: sm.Event, after: str, actions: tuple) -> None:
    machine = at(state, HOLD)
    step = machine.handle(event)
    assert (step.before, step.after, step.actions) == (state, after, actions), str(step)


PRESS_EXPECTED = {
    # state: (toggle next, hold next)
    "idle": ("connecting", "connecting"),
    "connecting": ("idle", "connecting"),
    "listening": ("idle", "listening"),
    "thinking": ("idle", "listening"),
    "speaking": ("listening", "listening"),
    "muted": ("muted", "muted"),
    "offline": ("connecting", "connecting"),
    "error": ("connecting", "connecting"),
    "ringing": ("idle", "idle"),  # a press only silences it
}


@pytest.mark.parametrize("state", sm.STATES)
def test_press_in_every_state_both_modes(state: str) -> None:
    for policy, expected in zip((TOGGLE, HOLD), PRESS_EXPECTED[state], strict=True):
        assert at(state, policy).handle(Press()).after == expected, (policy.mode, state)


def test_speaking_ends_after_turn_complete_and_drain_toggle() -> None:
    machine = at("speaking", TOGGLE)
    machine.handle(TurnComplete())
    step = machine.handle(PlaybackDrained())
    assert step.after == "listening"
    assert step.actions == (StreamMic(delay_ms=300), ArmTimeout(20.0))


def test_speaking_ends_after_turn_complete_and_drain_hold_closes_session() -> None:
    machine = at("speaking", HOLD)
    machine.handle(TurnComplete())
    assert machine.handle(PlaybackDrained()).actions == END
    assert machine.state == "idle"


def test_full_duplex_keeps_the_mic_while_speaking() -> None:
    full = Policy(mode="toggle", half_duplex=False)
    machine = at("listening", full)
    assert machine.handle(ReplyStarted()).actions == (CancelTimeout(),)
    step = machine.handle(Interrupted())
    assert step.actions == (StopPlayback(), ArmTimeout(20.0))


def test_hold_release_before_session_ready_sends_the_kept_audio_as_one_turn() -> None:
    machine = at("connecting", HOLD)
    machine.handle(Release())
    step = machine.handle(SessionReady())
    assert step.after == "thinking"
    assert step.actions == (
        ActivityStart(),
        StreamMic(live=False),
        ActivityEnd(),
        StopMic(),
        ArmTimeout(30.0),
    )


def test_ask_from_idle_sends_text_once_ready_and_never_opens_the_mic() -> None:
    machine = StateMachine(TOGGLE)
    machine.handle(Ask("weather?"))
    step = machine.handle(SessionReady())
    assert (step.after, step.actions) == ("thinking", (SendText("weather?"), ArmTimeout(30.0)))
    machine.handle(ReplyStarted())
    machine.handle(TurnComplete())
    step = machine.handle(PlaybackDrained())
    assert (step.after, step.actions) == ("idle", END)


def test_say_is_a_verbatim_ask() -> None:
    machine = StateMachine(TOGGLE)
    machine.handle(Ask("dinner is ready", verbatim=True))
    assert SendText("dinner is ready", verbatim=True) in machine.handle(SessionReady()).actions


def test_camera_streams_only_during_a_voice_conversation() -> None:
    policy = Policy(camera_stream=True)
    assert sm.Camera(True) not in StateMachine(policy).handle(Press()).actions
    machine = StateMachine(policy)
    machine.handle(Press())
    assert sm.Camera(True) in machine.handle(SessionReady()).actions
    assert sm.Camera(False) in machine.handle(Stop()).actions


def test_transition_logs_as_one_line() -> None:
    step = StateMachine(TOGGLE).handle(Ask("x" * 100))
    line = str(step)
    assert line.startswith("idle --Ask(") and "--> connecting [OpenSession]" in line
    assert "\n" not in line and len(line) < 120


def test_policy_from_config() -> None:
    from appliance.config import parse

    config = parse(
        '[behaviour]\nmode = "hold"\nduplex = "full"\nconversation_timeout_s = 7\n'
        '[camera]\nenabled = true\nmode = "stream"\n'
    )
    assert Policy.from_config(config) == Policy(
        mode="hold", half_duplex=False, tail_ms=300, timeout_s=7.0, camera_stream=True
    )


# --- invariants over random event orders -----------------------------------------------


class MicModel:
    """What the wiring would do with mic actions: is audio leaving the device now?"""

    def __init__(self) -> None:
        self.streaming = False
        self.keeping = False
        self.capture = True

    def apply(self, action: sm.Action) -> None:
        match action:
            case KeepMic():
                self.streaming, self.keeping = False, True
            case StreamMic(live=live):
                self.streaming, self.keeping = live, False
            case StopMic():
                self.streaming = self.keeping = False
            case Capture(on=on):
                self.capture = on


@pytest.mark.parametrize("policy", [TOGGLE, HOLD, Policy(half_duplex=False)], ids=str)
def test_random_walks_keep_the_privacy_rules(policy: Policy) -> None:
    rng = random.Random(5)
    for _ in range(300):
        machine, mic = StateMachine(policy), MicModel()
        for _ in range(40):
            step = machine.handle(rng.choice(ALL_EVENTS))
            for action in step.actions:
                mic.apply(action)
            state = machine.state
            if state in ("idle", "muted", "offline", "error", "ringing"):
                assert not mic.streaming and not mic.keeping, str(step)
            if state == "muted":
                assert not mic.capture, str(step)
            if state == "speaking" and policy.half_duplex and machine.memory.voice:
                assert not mic.streaming, str(step)
            if policy.mode == "hold" and state != "listening":
                assert not mic.streaming, str(step)
            if state in ("idle", "offline", "error", "muted"):
                assert machine.memory == sm.Memory(state=state), str(step)


# --- the wake word ------------------------------------------------------------------------

WAKE = Wake(audio_from_ns=5_000_000)
WAKE_EXPECTED = {
    # state: (half duplex next, full duplex next)
    "idle": ("connecting", "connecting"),
    "connecting": ("connecting", "connecting"),
    "listening": ("listening", "listening"),
    "thinking": ("thinking", "thinking"),
    # The hands-free rules let a wake word through while the speaker plays only where it
    # can be heard over it (full duplex, or echo cancelled): then it barges in.
    "speaking": ("listening", "listening"),
    "muted": ("muted", "muted"),
    "offline": ("connecting", "connecting"),
    "error": ("connecting", "connecting"),
    "ringing": ("idle", "idle"),
}


@pytest.mark.parametrize("state", sm.STATES)
def test_wake_word_starts_a_conversation_or_barges_in(state: str) -> None:
    full = Policy(mode="toggle", half_duplex=False)
    for policy, expected in zip((TOGGLE, full), WAKE_EXPECTED[state], strict=True):
        step = at(state, policy).handle(WAKE)
        assert step.after == expected, (policy.half_duplex, state)
        if state != expected and state in ("idle", "offline", "error"):
            # Like a press, but the audio kept starts where the wake word ended.
            assert step.actions == (
                Earcon("wake"),
                KeepMic(since_ns=5_000_000),
                OpenSession(),
            )
        elif state == "speaking" and expected == "listening":
            assert StopPlayback() in step.actions
        elif state == "ringing":
            assert step.actions == (StopRinging(),)
        else:
            assert step.actions == (), (state, step)


def test_wake_word_conversation_streams_the_kept_question_once_ready() -> None:
    machine = StateMachine(TOGGLE)
    machine.handle(WAKE)
    step = machine.handle(SessionReady())
    assert (step.after, step.actions) == ("listening", (StreamMic(), ArmTimeout(20.0)))


def test_wake_word_means_nothing_in_hold_mode() -> None:
    assert at("idle", HOLD).handle(WAKE).after == "idle"


def test_the_silence_timeout_counts_local_silence() -> None:
    machine = at("listening", TOGGLE)
    assert machine.handle(VoiceActivity(speaking=True)).actions == (CancelTimeout(),)
    assert machine.handle(VoiceActivity(speaking=False)).actions == (ArmTimeout(20.0),)
    assert at("speaking", TOGGLE).handle(VoiceActivity(speaking=True)).actions == ()
    assert at("listening", HOLD).handle(VoiceActivity(speaking=False)).actions == ()


# --- timers and alarms ---------------------------------------------------------------------

DUE = Ring("timer 'tea' (3 min)")


@pytest.mark.parametrize("state", ["idle", "muted", "offline", "error"])
def test_a_due_timer_rings_where_nothing_goes_on_and_returns_there(state: str) -> None:
    for policy in (TOGGLE, HOLD):
        machine = at(state, policy)
        step = machine.handle(DUE)
        assert (step.after, step.actions) == ("ringing", (StartRinging(),))
        assert machine.handle(Ring("alarm at 07:00 (once)")).actions == ()  # already ringing
        for silence in (Press(), Stop(), RingEnded(), WAKE):
            again = at(state, policy)
            again.handle(DUE)
            step = again.handle(silence)
            assert (step.after, step.actions) == (state, (StopRinging(),)), silence


@pytest.mark.parametrize("state", ["listening", "thinking", "speaking"])
def test_in_a_conversation_the_model_is_told_instead(state: str) -> None:
    machine = at(state, TOGGLE)
    step = machine.handle(DUE)
    assert step.after == state
    assert len(step.actions) == 1 and isinstance(step.actions[0], SendText)
    assert "timer 'tea' (3 min) is due" in step.actions[0].text


def test_connecting_tells_the_model_once_ready() -> None:
    machine = at("connecting", TOGGLE)
    assert machine.handle(DUE).actions == ()
    step = machine.handle(SessionReady())
    assert step.after == "thinking"
    assert any(isinstance(a, SendText) and "is due" in a.text for a in step.actions)


def test_ringing_then_a_typed_turn_or_mute_silences_first() -> None:
    machine = at("ringing", TOGGLE)
    step = machine.handle(Ask("hi"))
    assert step.after == "connecting" and step.actions[0] == StopRinging()
    assert OpenSession() in step.actions
    machine = at("ringing", TOGGLE)
    step = machine.handle(Mute(on=True))
    assert step.after == "muted" and step.actions[0] == StopRinging()
    assert Capture(False) in step.actions


def test_ringing_from_muted_goes_back_to_muted_and_mute_off_unmutes() -> None:
    machine = at("muted", TOGGLE)
    machine.handle(DUE)
    step = machine.handle(Mute(on=False))
    assert step.after == "idle" and step.actions[0] == StopRinging()


def test_a_reset_while_ringing_from_error_returns_to_idle() -> None:
    machine = at("error", TOGGLE)
    machine.handle(DUE)
    machine.handle(Reset())
    assert machine.handle(Press()).after == "idle"


def test_other_events_while_ringing_change_nothing() -> None:
    for event in ALL_EVENTS:
        if isinstance(event, Press | Wake | Stop | RingEnded | Ask | Mute | Fatal | Reset):
            continue
        machine = at("ringing", TOGGLE)
        step = machine.handle(event)
        assert (step.after, step.actions) == ("ringing", ()), event
