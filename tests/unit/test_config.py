"""Config loading: defaults, the exact error lines a user sees, the API key's sources."""

from __future__ import annotations

import grp
import logging
import os
import re
from pathlib import Path

import pytest

from appliance import config
from appliance.cli import main

REPO = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, "/etc/appliance/config.toml")
    return str(caught.value).splitlines()


def test_empty_file_gives_every_default() -> None:
    cfg = config.parse("", "x.toml")
    assert cfg == config.Config()
    assert cfg.live.model == config.DEFAULT_MODEL
    assert cfg.audio.period_ms == 20 and cfg.audio.preroll_ms == 300
    assert cfg.behaviour.mode == "toggle" and cfg.behaviour.conversation_timeout_s == 20
    assert cfg.button.pin is None and cfg.leds.driver == "none" and not cfg.camera.enabled


def test_shipped_config_is_all_defaults() -> None:
    assert config.load(REPO / "config.toml") == config.Config()


def _uncommented(text: str) -> str:
    """The shipped file with every `# key = value` and `# [table]` line switched on."""
    out = []
    for line in text.splitlines():
        match = re.fullmatch(r"# ([a-z_]+ = .*|\[\[?[a-z_.]+\]\]?)", line)
        out.append(match.group(1) if match else line)
    return "\n".join(out)


def test_shipped_config_documents_every_option_with_a_valid_value(tmp_path: Path) -> None:
    text = (REPO / "config.toml").read_text()
    example_ca = "/var/lib/appliance/emulator/ca.pem"
    assert example_ca in text
    (tmp_path / "ca.pem").write_text("")  # the example names a file that must exist
    on = _uncommented(text).replace(example_ca, str(tmp_path / "ca.pem"))
    # The example's group is the one install.sh creates; here, one that exists.
    here = grp.getgrgid(os.getgid()).gr_name
    on = on.replace('group = "appliance"', f'group = "{here}"')
    cfg = config.parse(on, "config.toml")  # every example validates
    documented = set(re.findall(r"^# ([a-z_]+) = ", text, re.M))
    for section in ("live", "audio", "button", "leds", "camera", "behaviour", "cost", "control"):
        model = type(getattr(cfg, section))
        missing = set(model.model_fields) - documented - {"actions", "states"}
        assert not missing, f"[{section}] options not documented in config.toml: {missing}"


def test_typo_names_file_key_and_suggestion() -> None:
    assert errors_of('[audio]\ncapture_devise = "hw:1"') == [
        "/etc/appliance/config.toml: audio.capture_devise: unknown key; "
        "did you mean 'capture_device'?"
    ]


def test_unknown_section_lists_allowed_sections() -> None:
    assert errors_of("[leds2]\ndriver = 'none'") == [
        "/etc/appliance/config.toml: leds2: unknown key; did you mean 'leds'?"
    ]
    assert errors_of("[speaker]\nvolume = 3") == [
        "/etc/appliance/config.toml: speaker: unknown key; allowed keys: board, live, audio, "
        "button, leds, camera, behaviour, wake, cost, timers, control, mcp, logging"
    ]


def test_wrong_type_names_value() -> None:
    assert errors_of('[audio]\nperiod_ms = "twenty"') == [
        "/etc/appliance/config.toml: audio.period_ms: Input should be a number, not a string "
        "(got 'twenty')"
    ]
    # Not taken for a number any more: a quoted number, a boolean.
    assert errors_of('[audio]\nperiod_ms = "20"\nvolume = true') == [
        "/etc/appliance/config.toml: audio.period_ms: Input should be a number, not a string "
        "(got '20')"
    ]
    assert errors_of("[audio]\nvolume = true") == [
        "/etc/appliance/config.toml: audio.volume: Input should be a number, not true or "
        "false (got True)"
    ]


def test_out_of_range_names_limit_and_value() -> None:
    assert errors_of("[audio]\nperiod_ms = 5") == [
        "/etc/appliance/config.toml: audio.period_ms: "
        "Input should be greater than or equal to 10 (got 5)"
    ]


def test_bad_choice_lists_allowed_values() -> None:
    assert errors_of('[behaviour]\nmode = "push"') == [
        "/etc/appliance/config.toml: behaviour.mode: Input should be 'toggle' or 'hold' "
        "(got 'push')"
    ]


def test_every_problem_is_reported_at_once() -> None:
    lines = errors_of("[audio]\nperiod_ms = 5\nvolume = 101\n[live]\nmodle = 'x'")
    assert [line.split(": ")[1] for line in lines] == [
        "live.modle",
        "audio.period_ms",
        "audio.volume",
    ]


def test_toml_syntax_error_names_line() -> None:
    (line,) = errors_of("[audio]\nvolume = \n")
    assert line.startswith("/etc/appliance/config.toml: not valid TOML: ")
    assert "line 2" in line


def test_cross_field_rules() -> None:
    assert errors_of("[audio]\ncapture_channel = 1") == [
        "/etc/appliance/config.toml: audio: capture_channel = 1 but capture_channels = 1: "
        "the channel index must be below the channel count"
    ]
    assert errors_of('[leds]\ndriver = "pwmled"') == [
        "/etc/appliance/config.toml: leds: driver = 'pwmled' needs `pin` (a BCM GPIO number)"
    ]


def test_led_state_table_keeps_other_defaults() -> None:
    cfg = config.parse('[leds.states.idle]\npattern = "off"', "x")
    assert cfg.leds.states["idle"].pattern == "off"
    assert cfg.leds.states["speaking"] == config.LedsConfig().states["speaking"]
    assert errors_of('[leds.states.sleeping]\npattern = "on"') == [
        "/etc/appliance/config.toml: leds: unknown LED state(s) sleeping; allowed: idle, "
        "connecting, listening, thinking, speaking, muted, offline, error, ringing, limit, camera"
    ]


def test_board_preset_fills_and_user_keys_override() -> None:
    cfg = config.parse('board = "respeaker-2mic"\n[button]\npin = 5', "x")
    assert cfg.button.pin == 5
    assert cfg.leds.driver == "apa102" and cfg.leds.power_pin == 12
    assert cfg.audio.capture_channels == 2
    assert errors_of('board = "aiy-v9"') == [
        "/etc/appliance/config.toml: board: unknown board 'aiy-v9'; allowed: aiy-voice-v1, "
        "custom, respeaker-2mic"
    ]


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load(tmp_path / "nope.toml")


SECRET = "AIzaSy-very-secret-test-key-0123456789"


def test_api_key_sources_in_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    keyfile = tmp_path / "key"
    keyfile.write_text("from-file\n")
    cfg = config.parse(f'[live]\napi_key_file = "{keyfile}"', "x")
    env = {"GEMINI_API_KEY": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}

    found = config.find_api_key(cfg, env)
    assert found is not None and found[0].get_secret_value() == "from-file"
    (creds / "gemini-api-key").write_text("from-credential\n")
    found = config.find_api_key(cfg, env)
    assert found is not None
    assert (found[0].get_secret_value(), found[1]) == (
        "from-credential",
        "systemd credential gemini-api-key",
    )
    found = config.find_api_key(config.Config(), {"GEMINI_API_KEY": " from-env "})
    assert found is not None and found[0].get_secret_value() == "from-env"
    assert config.find_api_key(config.Config(), {}) is None


def test_missing_key_file_names_it(tmp_path: Path) -> None:
    cfg = config.parse(f'[live]\napi_key_file = "{tmp_path}/k"', "x")
    with pytest.raises(config.ConfigError) as caught:
        config.find_api_key(cfg, {})
    assert str(caught.value) == (
        f"{tmp_path}/k: no such file; [live] api_key_file names it as the API key file"
    )


def test_the_log_handlers_redact_a_registered_key() -> None:
    from appliance.daemon.service import REDACTED, SECRETS, ConsoleFormatter

    SECRETS.register(SECRET)
    record = logging.LogRecord("appliance", logging.ERROR, __file__, 1, "%s", (SECRET,), None)
    assert SECRETS.filter(record)
    line = ConsoleFormatter().format(record)
    assert SECRET not in line and REDACTED in line


def test_key_never_shows_in_repr_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "gemini-api-key").write_text(SECRET)
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    found = config.find_api_key(config.Config(), env)
    assert found is not None
    key, _ = found
    logging.getLogger("appliance").info("key is %s, %r", key, key)
    assert SECRET not in repr(key) and SECRET not in str(key)
    assert SECRET not in caplog.text
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text("[live]\nmodel = 5\n")
    assert main(["check", str(cfg_file)]) == 78
    err = capsys.readouterr().err
    assert "live.model: Input should be a valid string (got 5)" in err
    assert SECRET not in err


def test_check_verb_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('board = "aiy-voice-v1"\n')
    assert main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{good}: OK" in out and "board: aiy-voice-v1" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[button]\npin = 99\n")
    assert main(["check", str(bad)]) == 78
    assert capsys.readouterr().err.strip() == (
        f"{bad}: button.pin: Input should be less than or equal to 53 (got 99)"
    )


def test_every_led_state_has_a_default_pattern() -> None:
    assert set(config.LedsConfig().states) == set(config.LED_STATES)


def test_wake_model_must_be_shipped_or_a_json_file(tmp_path: Path) -> None:
    assert errors_of('[wake]\nmodel = "okay_nabo"') == [
        "/etc/appliance/config.toml: wake.model: not a shipped model (okay_nabu, hey_jarvis, "
        "alexa, hey_mycroft) nor the path of a model's .json (got 'okay_nabo')"
    ]
    missing = tmp_path / "mine.json"
    assert errors_of(f'[wake]\nmodel = "{missing}"') == [
        f"/etc/appliance/config.toml: wake.model: no such file (got '{missing}')"
    ]
    missing.write_text("{}")
    assert config.parse(f'[wake]\nmodel = "{missing}"').wake.model == str(missing)


def test_wake_word_needs_toggle_mode() -> None:
    assert errors_of('[behaviour]\nmode = "hold"\n[wake]\nenabled = true') == [
        "/etc/appliance/config.toml: wake.enabled: the wake word starts toggle conversations; "
        'set behaviour.mode = "toggle" or wake.enabled = false'
    ]


def test_shipped_wake_models_are_the_packages() -> None:
    from pymicro_wakeword import Model

    assert set(config.SHIPPED_WAKE_MODELS) == {m.value for m in Model}


def test_options_the_chosen_model_rejects_are_config_errors() -> None:
    (problem,) = errors_of("[live]\naffective_dialog = true\nproactive_audio = false\n")
    assert problem.startswith("/etc/appliance/config.toml: live: ")
    assert "affective_dialog: gemini-3.8-live has no affective dialog" in problem
    assert "proactive_audio: gemini-3.8-live always has proactive audio" in problem
    preview = '[live]\nmodel = "gemini-2.5-flash-native-audio-preview-12-2025"\n'
    cfg = config.parse(preview + "affective_dialog = true\nproactive_audio = false\n")
    assert cfg.live.affective_dialog and cfg.live.proactive_audio is False
