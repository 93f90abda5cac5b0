"""Hands-free through the real stack: the daemon with the wake word on the paced JACK
rig, the room saying things into its microphone, the Live emulator over TLS.

The room speaks espeak-ng phrases and alsa-utils' recordings; the emulator's record
says what left the device.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.daemon.state import Ask, Mute
from appliance.live.emulator import Emulator, Reply
from tests.rig.appliance import running_appliance
from tests.rig.emulator import received_16k
from tests.rig.jack import JackAudio
from tests.rig.sounds import (
    alsa_voices_48k,
    best_match,
    espeak_48k,
    noise_48k,
    sequence,
    silence,
)

pytestmark = [pytest.mark.jack, pytest.mark.timeout(240), pytest.mark.usefixtures("pins")]

WAKE = {"enabled": True}


def question_start(voice_16k: Any, after_s: float) -> int:
    """Sample where speech resumes after the first pause past `after_s` (the comma)."""
    frames = len(voice_16k) // 320
    rms = np.sqrt((voice_16k[: frames * 320].reshape(frames, 320) ** 2).mean(axis=1))
    loud = rms > 0.01
    first = int(after_s * 50)
    pause = first + int(np.argmin(loud[first:]))
    return (pause + int(np.argmax(loud[pause:]))) * 320


async def test_wake_phrase_and_question_in_one_breath_reach_the_session_whole(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    phrase = espeak_48k("okay nabu, what's the time?")
    async with running_appliance(jack_audio, emu, tmp_path, wake=WAKE) as r:
        await asyncio.sleep(1.0)  # the detector has heard the quiet room
        jack_audio.rig.play(sequence(phrase, silence(1.0)))
        connecting = await r.wait_state("connecting")
        speaking = await r.wait_state("speaking", after=connecting)
        idle = await r.wait_state("idle", after=speaking)  # the silence timeout
        # Back at idle, the detector does not fire again on what it heard before.
        await asyncio.sleep(5.0)
        assert r.states[idle:] == ["idle"], r.states
        assert r.app.hands_free.status()["detections"] == 1
        assert len(emu.connections) == 1

    voice = phrase[::3]  # 16 kHz
    start = question_start(voice, after_s=0.5)
    heard = received_16k(emu)
    # The question's first 100 ms ("wh...") and its last 100 ms are in what was sent.
    loud_end = len(voice) - int(np.argmax(np.abs(voice[::-1]) > 0.02))
    assert best_match(heard, voice[start : start + 1600]) > 0.8
    assert best_match(heard, voice[loud_end - 1600 : loud_end]) > 0.8
    # The wake word's start ("oh-kay") did not leave the device.
    onset = int(np.argmax(np.abs(voice) > 0.02))
    assert best_match(heard, voice[onset : onset + 3200]) < 0.5


async def test_other_speech_and_noise_start_no_conversation(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    sentences = [
        ("the weather today is sunny with a chance of rain later", "en-us"),
        ("could you pass me the salt please", "en+m3"),
        ("the meeting has been moved to half past three", "en-gb-x-rp"),
        ("dinner is ready, come and eat before it gets cold", "en+f3"),
        ("okay, that sounds good to me", "en-us"),
        ("I think the book is on the kitchen table", "en-us+m7"),
    ]
    speech = [espeak_48k(text, voice) for text, voice in sentences]
    room = sequence(
        *alsa_voices_48k(),
        *(sequence(s, silence(0.3)) for s in speech),
        noise_48k(10, "pinknoise", 0.2),
        noise_48k(10, "brownnoise", 0.3),
        noise_48k(5, "whitenoise", 0.05),
    )
    # Each sound once (about a minute of room): looping the same sounds added two minutes
    # to every test run and little else. bench/wake_accuracy.py plays 13 minutes of them.
    seconds = len(room) / 48000
    assert seconds > 50
    async with running_appliance(jack_audio, emu, tmp_path, wake=WAKE) as r:
        jack_audio.rig.play(room, loop=True)
        await asyncio.sleep(seconds)
        status = r.app.hands_free.status()
        assert status["enabled"] and status["listening"]
        assert status["detections"] == 0, status
        assert r.states == ["idle"]
    assert emu.connections == [] and emu.received_audio() == b""


async def test_muted_hears_no_wake_word_and_unmuted_does(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    phrase = sequence(espeak_48k("okay nabu"), silence(2.5))
    async with running_appliance(jack_audio, emu, tmp_path, wake=WAKE) as r:
        r.app.post(Mute(on=True))
        await r.wait_state("muted")
        jack_audio.rig.play(phrase)
        await asyncio.sleep(3.0)
        assert r.states == ["idle", "muted"] and emu.connections == []
        r.app.post(Mute(on=False))
        unmuted = await r.wait_state("idle", after=1)
        await asyncio.sleep(1.0)
        jack_audio.rig.play(phrase)
        await r.wait_state("connecting", after=unmuted)


async def test_its_own_voice_saying_the_wake_word_starts_nothing_in_half_duplex(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    # The reply says the wake word, and the room returns the speaker to the microphone.
    said = espeak_48k("okay nabu, okay nabu")[::2]  # 24 kHz, the Live API's output rate
    emu.scenario.default_reply = Reply(pcm=(said * 32767).astype("<i2").tobytes())
    jack_audio.rig.echo(delay_ms=50, gain=0.8)
    async with running_appliance(jack_audio, emu, tmp_path, wake=WAKE) as r:
        async for _ in r.app.transcript_of_next_turn(Ask("say okay nabu")):
            pass
        idle = await r.wait_state("idle", after=1)
        await asyncio.sleep(1.5)
        assert r.states[idle:] == ["idle"], r.states
        assert r.app.hands_free.status()["detections"] == 0
    assert len(emu.connections) == 1  # the typed turn's session, and no other
