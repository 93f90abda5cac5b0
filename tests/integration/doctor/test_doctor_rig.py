"""`appliance doctor` through the real stack: the command itself, in a process of its own,
against the local Live emulator over TLS (the real google-genai SDK) and on the JACK rig
(real alsa-lib and pyalsaaudio on paced virtual devices)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.live.emulator import Scenario, ThreadedEmulator
from tests.rig.jack import JackAudio, tone

GOOD_KEY = "AIzaSy-doctor-good-key-0123456789abcdef"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator(Scenario(use_espeak=False), api_key=GOOD_KEY) as emu:
        yield emu


def doctor(
    tmp: Path, *args: str, key: str | None = None, **sections: str
) -> tuple[int, dict[str, str]]:
    """Run `appliance doctor` on a config of `sections` (TOML bodies); (status, lines by
    check name)."""
    config = tmp / "config.toml"
    config.write_text("\n".join(f"[{name}]\n{body}" for name, body in sections.items()))
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    if key is not None:
        env["GEMINI_API_KEY"] = key
    run = subprocess.run(
        [sys.executable, "-m", "appliance", "doctor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.stderr == "", run.stderr  # everything is in the one line of each check
    lines: dict[str, str] = {}
    for line in run.stdout.splitlines():
        found = re.match(r"^(pass|FAIL|skip)  (\S+(?: \S+)?)\s{2,}", line)
        if found:
            lines[found.group(2)] = line
    assert lines, run.stdout
    return run.returncode, lines


def live_section(emu: ThreadedEmulator) -> str:
    return f'endpoint = "{emu.base_url}"\nca_file = "{emu.ca_file}"\nsetup_timeout_s = 10\n'


def test_against_the_emulator_with_a_good_key_every_network_check_passes(
    tmp_path: Path, emulator: ThreadedEmulator
) -> None:
    before = len(emulator.connections)
    status, lines = doctor(tmp_path, key=GOOD_KEY, live=live_section(emulator))
    assert lines["api key"].startswith("pass  api key     found: environment variable")
    assert GOOD_KEY not in "\n".join(lines.values())
    for name in ("dns", "tls", "endpoint", "live"):
        assert lines[name].startswith("pass"), lines[name]
    assert "127.0.0.1 is an address" in lines["dns"]
    assert f"CA {emulator.ca_file}" in lines["tls"]
    assert "answers (404 Not Found" in lines["endpoint"] or "answers (4" in lines["endpoint"]
    assert "key accepted, model gemini-3.8-live served" in lines["live"]
    assert len(emulator.connections) == before + 1  # one short connect, no retry
    assert status in (0, 69, 77)  # the machine's audio and clock decide the rest


def test_a_key_the_emulator_rejects_fails_the_live_check_with_its_fix(
    tmp_path: Path, emulator: ThreadedEmulator
) -> None:
    status, lines = doctor(
        tmp_path, key="AIzaSy-not-the-key-000000000", live=live_section(emulator)
    )
    assert status == 69
    assert lines["tls"].startswith("pass") and lines["endpoint"].startswith("pass")
    live = lines["live"]
    assert live.startswith("FAIL  live        the Live API rejected the API key"), live
    assert "; fix: the key in environment variable GEMINI_API_KEY is not accepted" in live
    assert "https://aistudio.google.com/apikey" in live


def test_a_model_the_service_does_not_serve_fails_the_live_check_with_its_fix(
    tmp_path: Path, emulator: ThreadedEmulator
) -> None:
    live = live_section(emulator) + 'model = "gemini-2.0-flash-exp"\n'
    status, lines = doctor(tmp_path, key=GOOD_KEY, live=live)
    assert status == 69
    assert lines["live"].startswith(
        "FAIL  live        the Live API does not serve model 'gemini-2.0-flash-exp' (1008"
    ), lines["live"]
    assert "fix: set [live] model to a current Live model" in lines["live"]


def test_an_unreachable_endpoint_fails_at_tls_and_skips_the_rest(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, lines = doctor(tmp_path, key=GOOD_KEY, live=f'endpoint = "https://127.0.0.1:{port}"\n')
    assert status == 69
    assert lines["tls"].startswith("FAIL  tls         127.0.0.1:") and "refused" in lines["tls"]
    assert lines["endpoint"] == "skip  endpoint    needs tls"
    assert lines["live"] == "skip  live        needs tls"


AUDIO = 'capture_device = "{mic}"\nplayback_device = "{spk}"\n'


@pytest.mark.jack
def test_devices_on_the_jack_rig_pass_and_the_audio_test_hears_and_plays(
    tmp_path: Path, jack_audio: JackAudio
) -> None:
    import numpy as np

    rig = jack_audio.rig
    rig.play(tone(1000, 1.0, level=0.25), loop=True)  # -15.1 dBFS RMS into the microphone
    status, lines = doctor(
        tmp_path,
        "--audio-test",
        audio=AUDIO.format(mic=jack_audio.capture_device, spk=jack_audio.playback_device),
    )
    rig.play([])
    assert lines["capture"] == (
        "pass  capture     'rigmic' at 16000 Hz, 1 channel(s), S16_LE opens"
    )
    assert lines["playback"] == (
        "pass  playback    'rigspk' at 24000 Hz, 1 channel(s), S16_LE opens"
    )
    level = re.search(r"level (-?\d+\.\d) dBFS RMS, peak (-?\d+\.\d) dBFS", lines["recording"])
    assert level, lines["recording"]
    rms, peak = float(level.group(1)), float(level.group(2))
    print(f"recorded {rms} dBFS RMS, peak {peak} dBFS (sent -15.1 / -12.0)")
    assert abs(rms - -15.1) < 1.5 and abs(peak - -12.0) < 1.5
    assert lines["tone"].startswith("pass  tone        played 1 s of 440 Hz at -12 dBFS")
    # What the speaker played reached the rig: 440 Hz, about -12 dBFS at its peak.
    _, blocks = rig.blocks()
    recorded = np.concatenate(list(blocks)) if len(blocks) else np.zeros(1)
    loud = recorded[np.abs(recorded) > 0.05]
    assert len(loud) > 0.8 * 48000, len(loud)  # most of the second of tone
    spectrum = np.abs(np.fft.rfft(recorded))
    assert abs(np.argmax(spectrum) * 48000 / len(recorded) - 440) < 5
    assert abs(20 * np.log10(np.abs(recorded).max()) - -12.0) < 1.0
    assert status != 78


@pytest.mark.jack
def test_a_missing_device_fails_naming_it_and_how_to_list_devices(
    tmp_path: Path, jack_audio: JackAudio
) -> None:
    status, lines = doctor(
        tmp_path, audio=AUDIO.format(mic="nosuchmic", spk=jack_audio.playback_device)
    )
    assert status == 69
    capture = lines["capture"]
    assert capture.startswith("FAIL  capture     'nosuchmic' is not available ("), capture
    assert "devices here: " in capture and "rigmic" in capture
    assert capture.endswith(
        "fix: set audio.capture_device to one of them (`arecord -L` lists them with descriptions)"
    )
    assert lines["playback"].startswith("pass")
