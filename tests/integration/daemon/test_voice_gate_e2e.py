"""The voice gate through the real stack: the daemon on the paced JACK rig, a real voice
(alsa-utils' Front_Center.wav: a short word, a pause, a longer one) in a quiet room, the
Live emulator over TLS. What the emulator received is what left the device."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.daemon.control import ControlClient
from appliance.live.emulator import Emulator, Reply, Scenario, VadConfig
from tests.rig.appliance import Running, running_appliance, speech_48k
from tests.rig.emulator import received_16k, tone
from tests.rig.jack import JackAudio
from tests.rig.sounds import best_match

pytestmark = [pytest.mark.jack, pytest.mark.timeout(90), pytest.mark.usefixtures("pins")]


def words_arrived(heard: Any) -> list[float]:
    """How well the first 100 ms of each word of Front_Center.wav ("Front", "Center")
    and its last 100 ms are found in `heard` (1.0: exactly)."""
    voice = speech_48k(0)[::3]
    loud = np.abs(voice) > 0.05
    front = int(np.argmax(loud))
    quiet_from = front + int(np.argmin(loud[front : front + 8000] | loud[front + 1 : front + 8001]))
    gap = quiet_from + 3200  # the pause between the words is longer than 200 ms
    center = gap + int(np.argmax(loud[gap:]))
    end = len(voice) - int(np.argmax(loud[::-1]))
    pieces = [voice[front : front + 1600], voice[center : center + 1600], voice[end - 1600 : end]]
    return [best_match(heard, piece) for piece in pieces]


async def ask_once(r: Running, jack: JackAudio) -> None:
    assert r.app.control is not None
    await asyncio.to_thread(ControlClient(r.app.control.path).talk)
    listening = await r.wait_state("listening")
    await asyncio.sleep(1.0)  # the room is quiet for a second first
    jack.rig.play(speech_48k())
    await r.wait_state("speaking", after=listening)
    await r.wait_state("idle", after=listening)  # the reply, then the silence timeout


async def test_the_question_leaves_the_device_and_the_quiet_room_does_not(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        await asyncio.sleep(2.5)  # the daemon has run a while: its ring is full
        await ask_once(r, jack_audio)
        sent_s = r.app.status()["audio_sent"]["seconds"]
    speech_s = len(speech_48k(0)) / 48000
    heard = received_16k(emu)
    # Both words arrived, "Front" too (the detector wakes up on "Center"), and the end.
    assert min(words_arrived(heard)) > 0.8, words_arrived(heard)
    # The second before the question, the reply and the 3 s timeout after it: not sent.
    assert len(heard) / 16000 < speech_s + 1.0
    assert sent_s == pytest.approx(len(heard) / 16000, abs=0.05)


async def test_send_all_streams_the_whole_conversation(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path
) -> None:
    async with running_appliance(jack_audio, emu, tmp_path, behaviour={"send_audio": "all"}) as r:
        await asyncio.sleep(2.5)
        await ask_once(r, jack_audio)
    heard = received_16k(emu)
    assert min(words_arrived(heard)) > 0.8, words_arrived(heard)
    # The quiet second before the question and the 3 s of the timeout went too.
    assert len(heard) / 16000 > len(speech_48k(0)) / 48000 + 3.5
    assert emu.recorder.of("audio_stream_end") == []


async def test_the_stream_end_lets_a_slower_service_answer_sooner(
    jack_audio: JackAudio, tmp_path: Path
) -> None:
    # A service that waits 3 s of silence before it ends a turn: the gate's stream end,
    # sent a moment after the voice stops, ends it long before that.
    scenario = Scenario(
        think_ms=50,
        realtime_factor=2.0,
        use_espeak=False,
        default_reply=Reply(pcm=tone(610, 500)),
        vad=VadConfig(silence_ms=3000),
    )
    async with Emulator(scenario) as slow, running_appliance(jack_audio, slow, tmp_path) as r:
        await asyncio.sleep(2.5)
        assert r.app.control is not None
        await asyncio.to_thread(ControlClient(r.app.control.path).talk)
        listening = await r.wait_state("listening")
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        played = loop.time()
        jack_audio.rig.play(speech_48k())
        await r.wait_state("speaking", after=listening)
        replied_after = loop.time() - played
    ends = slow.recorder.of("audio_stream_end")
    assert len(ends) == 1
    voice_s = len(speech_48k(0)) / 48000
    assert replied_after < voice_s + 2.0  # not voice + 3 s of waiting for silence
