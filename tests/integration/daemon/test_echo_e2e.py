"""Voice barge-in through the real stack: the daemon in full duplex on the paced JACK
rig, in a room that returns the speaker to the microphone (50 ms late, half the level,
with reflections over 250 ms), the Live emulator over TLS answering in espeak-ng's voice.

Without echo cancellation the reply interrupts itself (the echo path is real); with it,
replies play to the end, and a user talking over one is heard and stops it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio.fakes import eventually
from appliance.daemon.state import Ask, Press
from appliance.live.emulator import Emulator, Reply, Scenario
from appliance.live.emulator.speech import speak
from tests.rig.appliance import Running, running_appliance, speech_48k
from tests.rig.jack import JackAudio
from tests.rig.sounds import espeak_48k

pytestmark = [pytest.mark.jack, pytest.mark.timeout(180), pytest.mark.usefixtures("pins")]

ANSWER = (
    "Here is a longer answer, so that the speaker goes on talking for a while, "
    "long enough for the room to hear it."
)
FULL_DUPLEX = {"duplex": "full", "conversation_timeout_s": 4}


def room(jack: JackAudio) -> None:
    """The speaker comes back to the microphone, and the room is not digital silence."""
    jack.rig.echo(delay_ms=50, gain=0.5, reverb_ms=250)
    jack.rig.noise(-60.0)


@pytest.fixture
async def spoken_emu() -> Any:
    """The emulator answering each turn with the same spoken answer, at real-time pace
    (so a user can talk over a reply that is still being generated)."""
    reply = speak(ANSWER)
    scenario = Scenario(think_ms=100, realtime_factor=1.0, default_reply=Reply(pcm=reply))
    async with Emulator(scenario) as emulator:
        emulator.reply_s = len(reply) / 2 / 24000  # type: ignore[attr-defined]
        yield emulator


def sent_kinds(emu: Emulator) -> list[str]:
    return [s.kind for s in emu.recorder.sent]


def sent_at(emu: Emulator, kind: str) -> list[int]:
    """When the emulator sent a `serverContent.<kind>`."""
    return [s.t_ns for s in emu.recorder.sent if f"serverContent.{kind}" in s.kind.split("+")]


def reply_windows(emu: Emulator) -> list[tuple[int, int]]:
    """(first reply frame, turnComplete) of each turn, as the emulator sent them."""
    windows, begun = [], None
    for sent in emu.recorder.sent:
        kinds = sent.kind.split("+")
        if begun is None and "serverContent.modelTurn" in kinds:
            begun = sent.t_ns
        if begun is not None and "serverContent.turnComplete" in kinds:
            windows.append((begun, sent.t_ns))
            begun = None
    return windows


async def ask(r: Running, jack: JackAudio, after: int = 0) -> int:
    """The user says something once the appliance listens; the index of `speaking`."""
    listening = await r.wait_state("listening", after=after)
    jack.rig.play(speech_48k(0.2))
    return await r.wait_state("speaking", after=listening)


async def test_without_echo_cancellation_the_reply_interrupts_itself(
    jack_audio: JackAudio, spoken_emu: Emulator, tmp_path: Path
) -> None:
    room(jack_audio)
    async with running_appliance(jack_audio, spoken_emu, tmp_path, behaviour=FULL_DUPLEX) as r:
        r.app.post(Press())
        speaking = await ask(r, jack_audio)
        started = time.monotonic()
        await r.wait_state("listening", after=speaking)
        cut_after = time.monotonic() - started
    assert sent_at(spoken_emu, "interrupted")
    assert r.app.session.counters["interruptions"] >= 1
    assert cut_after < spoken_emu.reply_s / 2  # type: ignore[attr-defined]


async def test_with_echo_cancellation_three_replies_play_to_the_end(
    jack_audio: JackAudio, spoken_emu: Emulator, tmp_path: Path
) -> None:
    room(jack_audio)
    audio = {"echo_cancel": True}
    async with running_appliance(
        jack_audio, spoken_emu, tmp_path, behaviour=FULL_DUPLEX, audio=audio
    ) as r:
        r.app.post(Press())
        speaking = 0
        lengths = []
        for _ in range(3):
            speaking = await ask(r, jack_audio, after=speaking)
            started = time.monotonic()
            speaking = await r.wait_state("listening", after=speaking, within_s=30)
            lengths.append(time.monotonic() - started)
        status = r.app.status()["echo_cancel"]
    assert not sent_at(spoken_emu, "interrupted"), sent_kinds(spoken_emu)
    assert r.app.session.counters["interruptions"] == 0
    assert len(sent_at(spoken_emu, "turnComplete")) >= 3
    reply_s = spoken_emu.reply_s  # type: ignore[attr-defined]
    assert min(lengths) > reply_s * 0.95, lengths  # each played whole
    # Nothing of the replies' echo left the device: the gate heard only the questions.
    for begun, ended in reply_windows(spoken_emu):
        during = [a.t_ns for a in spoken_emu.recorder.of("audio") if begun + 0.5e9 < a.t_ns < ended]
        assert during == [], "mic audio sent while a reply played"
    assert status["echo_periods"] > 0 and status["reduction_db"] > 20, status


def speech_onset_s(voice_48k: Any) -> float:
    return float(np.argmax(np.abs(voice_48k) > 0.02)) / 48000


async def test_with_echo_cancellation_a_user_talking_over_a_reply_interrupts_it(
    jack_audio: JackAudio, spoken_emu: Emulator, tmp_path: Path
) -> None:
    room(jack_audio)
    rig = jack_audio.rig
    audio = {"echo_cancel": True}
    async with running_appliance(
        jack_audio, spoken_emu, tmp_path, behaviour=FULL_DUPLEX, audio=audio
    ) as r:
        r.app.post(Press())
        speaking = await ask(r, jack_audio)
        await asyncio.sleep(2.0)  # well into the reply
        voice = speech_48k(0.5)
        before = time.monotonic_ns()
        start_frame = rig.play(voice)
        now_frame = rig.frame_time
        after = time.monotonic_ns()
        await r.wait_state("listening", after=speaking)
        await asyncio.sleep(1.0)
        frames, _ = rig.blocks()

    # The JACK clock against ours: frame `now_frame` was current at about (before+after)/2.
    def mono_ns(frame: int) -> int:
        return (before + after) // 2 + (frame - now_frame) * 1_000_000_000 // rig.rate

    spoke_ns = mono_ns(start_frame) + int(speech_onset_s(voice) * 1e9)
    interrupted = sent_at(spoken_emu, "interrupted")
    assert interrupted, sent_kinds(spoken_emu)
    heard_after_ms = (interrupted[0] - spoke_ns) / 1e6
    assert 0 < heard_after_ms < 1500, heard_after_ms  # loose: bench/echo_cancel.py measures
    # The speaker went quiet right after `interrupted` (the first silent block after it).
    sounding = set(rig.sound_frames().tolist())
    after_interrupt = [int(f) for f in frames if mono_ns(int(f)) >= interrupted[0]]
    first_quiet = next(f for f in after_interrupt if f not in sounding)
    silent_after_ms = (mono_ns(first_quiet) - interrupted[0]) / 1e6
    assert silent_after_ms < 200, silent_after_ms


# --- the wake word over the speaker (half duplex, the default) --------------------------

WAKE = {"enabled": True}


async def test_with_echo_cancellation_its_own_voice_saying_the_wake_word_starts_nothing(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # The wake word now listens while the reply plays: it must hear the room, not the
    # speaker, even when the reply says the wake word.
    said = espeak_48k("okay nabu, okay nabu, okay nabu")[::2]  # 24 kHz
    emu.scenario.default_reply = Reply(pcm=(said * 32767).astype("<i2").tobytes())
    room(jack_audio)
    audio = {"echo_cancel": True}
    async with running_appliance(jack_audio, emu, tmp_path, wake=WAKE, audio=audio) as r:
        await asyncio.sleep(1.0)
        async for _ in r.app.transcript_of_next_turn(Ask("say okay nabu")):
            pass
        speaking = await r.wait_state("speaking")
        assert r.app.hands_free.status()["listening"]  # over the speaker: echo cancelled
        idle = await r.wait_state("idle", after=speaking)
        await asyncio.sleep(1.0)
        assert r.states[idle:] == ["idle"], r.states
        assert r.app.hands_free.status()["detections"] == 0
    assert len(emu.connections) == 1


async def test_with_echo_cancellation_the_wake_word_interrupts_a_reply(
    jack_audio: JackAudio, spoken_emu: Emulator, tmp_path: Path
) -> None:
    room(jack_audio)
    audio = {"echo_cancel": True}
    async with running_appliance(
        jack_audio, spoken_emu, tmp_path, wake=WAKE, audio=audio, behaviour={"duplex": "half"}
    ) as r:
        r.app.post(Press())
        speaking = await ask(r, jack_audio)
        started = time.monotonic()
        await asyncio.sleep(1.5)  # well into the reply
        jack_audio.rig.play(espeak_48k("okay nabu"))
        listening = await r.wait_state("listening", after=speaking)
        cut_after = time.monotonic() - started
        assert r.app.hands_free.status()["detections"] == 1
        playback = r.app.playback
        assert playback is not None
        await eventually(lambda: not playback.playing, within_s=0.5)  # the speaker stopped
    assert cut_after < spoken_emu.reply_s - 1.0  # type: ignore[attr-defined]
    assert r.states[speaking : listening + 1] == ["speaking", "listening"]


async def test_rapid_interruptions_by_voice_never_lose_the_speaker(
    jack_audio: JackAudio, spoken_emu: Emulator, tmp_path: Path
) -> None:
    # Each reply is talked over within a second of starting, and the next reply starts
    # right after: the speaker is dropped and restarted again and again (it used to stall
    # after a drop, end the conversation in `error` and be reported lost).
    room(jack_audio)
    audio = {"echo_cancel": True}
    async with running_appliance(
        jack_audio, spoken_emu, tmp_path, behaviour=FULL_DUPLEX, audio=audio
    ) as r:
        r.app.post(Press())
        speaking = await ask(r, jack_audio)
        for _ in range(4):
            await asyncio.sleep(0.6)
            jack_audio.rig.play(speech_48k(0.2))  # talked over: interrupted, then answered
            listening = await r.wait_state("listening", after=speaking)
            speaking = await r.wait_state("speaking", after=listening)
        await r.wait_state("listening", after=speaking, within_s=30)  # the last plays whole
        playback = r.app.playback
        assert playback is not None
        assert playback.error is None and playback.recoveries == 0
    assert "error" not in r.states
    assert len(sent_at(spoken_emu, "interrupted")) >= 4
    assert len(spoken_emu.connections) == 1
