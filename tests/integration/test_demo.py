"""`appliance demo`, the README's first command, as a user runs it without a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from appliance.demo.room import jack_available

pytestmark = [pytest.mark.jack, pytest.mark.timeout(180)]


def run_demo(tmp_path: Path, *args: str) -> str:
    """`appliance demo ARGS` without a terminal, on a virtual sound card; its output."""
    why = jack_available()
    if why:
        pytest.skip(why)
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "ALSA_CONFIG_PATH")}
    env.pop("JACK_DEFAULT_SERVER", None)
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--audio", "room", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_scripted_demo_talks_to_the_emulator_through_a_virtual_sound_card(
    tmp_path: Path,
) -> None:
    out = tmp_path / "reply.wav"
    text = run_demo(tmp_path, "--out", str(out))
    assert "talking to the local Live API emulator" in text
    for state in ("connecting", "listening", "speaking", "thinking", "idle"):
        assert f"● {state}" in text
    assert re.search(r"you: \(1\.\d s of speech\)", text)  # the room's voice was heard
    assert "you: What can you do?" in text
    assert "assistant: Turn 2:" in text  # both turns in one conversation
    assert "Done: 2 turns" in text
    with wave.open(str(out), "rb") as wav:
        assert wav.getframerate() == 48000
        seconds = wav.getnframes() / 48000
    assert seconds > 2.0  # the spoken replies were played and recorded


def test_wake_demo_starts_by_voice_and_takes_a_follow_up_without_it(tmp_path: Path) -> None:
    text = run_demo(tmp_path, "--wake")
    assert 'the room says "okay nabu, what\'s the time?"' in text
    assert "Turn 1:" in text and "Turn 2:" in text  # the wake word's question, a follow-up
    assert text.count("● connecting") == 1  # one conversation: no wake word, no press again
    assert "Done: 2 turns" in text
