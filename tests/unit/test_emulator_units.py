"""Plain-logic parts of the Live emulator: parsing, detection, speech, scenario, CLI."""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import math
from array import array

import pytest

from appliance.live.emulator import Fault, FaultKind, Reply, Scenario, add_arguments
from appliance.live.emulator import protocol as p
from appliance.live.emulator.cli import describe
from appliance.live.emulator.speech import resample, speak, tones
from appliance.live.emulator.vad import EnergyDetector, Vad, VadConfig


def test_normalise_renames_protocol_keys_but_not_payloads() -> None:
    msg = {
        "toolResponse": {"functionResponses": [{"id": "a", "response": {"camelKey": 1}}]},
        "realtimeInput": {"audio": {"mimeType": "x"}},
    }
    out = p.normalise(msg)
    assert out["tool_response"]["function_responses"][0]["response"] == {"camelKey": 1}
    assert out["realtime_input"]["audio"] == {"mime_type": "x"}


@pytest.mark.parametrize("size", [1, 2, 3, 62, 63, 64, 255])
def test_b64decode_accepts_both_alphabets_with_and_without_padding(size: int) -> None:
    data = bytes(range(256))[-size:] + b"\xfb\xff\xfe"
    for encoded in (
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ):
        assert p.b64decode(encoded) == data


def test_b64decode_rejects_garbage_with_1007() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.b64decode("not base64!")
    assert info.value.code == 1007


def test_parse_setup_reads_both_casings() -> None:
    camel = p.load(
        '{"setup":{"model":"models/m","generationConfig":{"responseModalities":["TEXT"]},'
        '"realtimeInputConfig":{"automaticActivityDetection":{"disabled":true}},'
        '"sessionResumption":{"handle":"h"},"outputAudioTranscription":{},'
        '"systemInstruction":{"parts":[{"text":"be brief"}]},'
        '"tools":[{"functionDeclarations":[{"name":"f"}]}]}}'
    )
    setup = p.parse_setup(camel)
    assert setup.modalities == ("TEXT",)
    assert not setup.automatic_activity_detection
    assert setup.session_resumption and setup.resume_handle == "h"
    assert setup.output_transcription and not setup.input_transcription
    assert setup.system_instruction == "be brief"
    assert setup.function_names == ("f",)
    plain = p.parse_setup(p.load('{"setup":{"model":"models/m"}}'))
    assert plain.modalities == ("AUDIO",) and plain.automatic_activity_detection


def test_first_frame_must_be_setup() -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_setup(p.load('{"realtime_input":{}}'))


def test_rate_of_mime_type() -> None:
    assert p.rate_of("audio/pcm;rate=24000") == 24000
    assert p.rate_of("audio/pcm") == 16000


def _sine(ms: int, amplitude: int, rate: int = 16000) -> bytes:
    n = rate * ms // 1000
    return array(
        "h", (int(amplitude * math.sin(2 * math.pi * 610 * i / rate)) for i in range(n))
    ).tobytes()


def test_energy_detector_start_and_end_after_silence() -> None:
    vad = EnergyDetector(VadConfig(threshold_rms=500, silence_ms=500))
    assert vad.feed(_sine(30, 3000)) == []  # too short to count as speech yet
    assert vad.feed(_sine(500, 3000)) == [Vad.SPEECH_START]
    assert vad.feed(bytes(2 * 16 * 480)) == []  # 480 ms of silence: not yet
    assert vad.feed(bytes(2 * 16 * 40)) == [Vad.SPEECH_END]
    assert 500 <= vad.speech_ms <= 540


def test_energy_detector_ignores_quiet_noise() -> None:
    vad = EnergyDetector()
    assert vad.feed(_sine(2000, 300)) == []


def test_reply_audio_is_deterministic() -> None:
    assert speak("hello there", use_espeak=False) == tones("hello there")
    assert speak("hello there") == speak.__wrapped__("hello there")


def test_tones_do_not_repeat_every_480_frames_at_48k() -> None:
    pcm48 = array("h")
    pcm48.frombytes(resample(tones("a b c d"), 24000, 48000))
    period = 480
    blocks = [pcm48[i : i + period] for i in range(0, 48000 - period, period)]
    assert all(a != b for a, b in itertools.pairwise(blocks) if any(a))


def test_resample_length() -> None:
    assert len(resample(bytes(2 * 22050), 22050, 24000)) == 2 * 24000
    assert len(resample(bytes(2 * 48000), 48000, 16000)) == 2 * 16000


def test_scenario_models_and_replies() -> None:
    sc = Scenario(replies=[Reply(text="first")])
    assert sc.model_allowed("models/gemini-3.1-flash-live-preview")
    assert sc.model_allowed("gemini-2.5-flash-native-audio-preview-12-2025")
    assert not sc.model_allowed("models/gemini-2.0-flash-exp")
    assert sc.reply_for(1, "").text == "first"
    assert sc.reply_for(2, "") is sc.default_reply
    sc.script = lambda turn, heard: Reply(text=heard) if turn == 2 else None
    assert sc.reply_for(2, "echo").text == "echo"


def test_faults_target_connection_and_turn_once() -> None:
    sc = Scenario(faults=[Fault(FaultKind.DROP, connection=2, turn=3)])
    assert sc.take_fault(1, 3) is None
    assert sc.take_fault(2, None) is None
    assert sc.take_fault(2, 3) is not None
    assert sc.take_fault(2, 3) is None  # once


def test_cli_options_and_instructions() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--port", "8443", "--think-ms", "5", "--model", "x*"])
    assert (args.port, args.think_ms, args.model) == (8443, 5, ["x*"])
    out = io.StringIO()
    describe({"GOOGLE_GEMINI_BASE_URL": "https://127.0.0.1:1", "SSL_CERT_FILE": "/c a.pem"}, out)
    text = out.getvalue()
    assert "export GOOGLE_GEMINI_BASE_URL=https://127.0.0.1:1" in text
    assert "export SSL_CERT_FILE='/c a.pem'" in text


def test_a_function_name_the_service_refuses_closes_1007() -> None:
    for bad in ("home/HassTurnOn", "1st", "x" * 65, "with space"):
        frame = json.dumps(
            {
                "setup": {
                    "model": "m",
                    "tools": [{"functionDeclarations": [{"name": "ok_name"}, {"name": bad}]}],
                }
            }
        )
        with pytest.raises(p.ProtocolError) as caught:
            p.parse_setup(p.load(frame))
        assert caught.value.code == 1007 and repr(bad) in caught.value.reason
    good = json.dumps(
        {
            "setup": {
                "model": "m",
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "home_HassTurnOn"},
                            {"name": "_a.b:c-d"},
                            {"name": "x" * 64},
                        ]
                    }
                ],
            }
        }
    )
    assert len(p.parse_setup(p.load(good)).function_names) == 3
