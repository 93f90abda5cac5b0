"""The fleet role's config template, rendered by Ansible itself and read back by
appliance's own config loader: per-host variables must become exactly those settings.

Cheap (two Ansible runs on localhost, a few seconds), so it is in the default run; the
role applied over SSH to a booted Debian is tests/system/test_fleet.py (`-m fleet`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance import config

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
TEMPLATE = ANSIBLE_DIR / "roles" / "appliance" / "templates" / "config.toml.j2"
BIN = Path(sys.executable).parent


def ansible(tmp_path: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    if not (BIN / tool).exists():
        pytest.skip(f"{tool} is not installed in this venv: pip install -e '.[dev]'")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    result = subprocess.run(
        [str(BIN / tool), *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def render(tmp_path: Path, *configs: dict[str, Any]) -> list[Path]:
    """config.toml as the role writes it from each `appliance_config` (one Ansible run)."""
    cases = [
        {"dest": str(tmp_path / f"config-{i}.toml"), "config": c} for i, c in enumerate(configs)
    ]
    play = [
        {
            "name": "Render config.toml",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable},
            "tasks": [
                {
                    "name": "Render",
                    "ansible.builtin.template": {"src": str(TEMPLATE), "dest": "{{ item.dest }}"},
                    "vars": {"appliance_config": "{{ item.config }}"},
                    "loop": cases,
                }
            ],
        }
    ]
    playbook = tmp_path / "render.yml"
    playbook.write_text(json.dumps(play))  # JSON is YAML
    ansible(tmp_path, "ansible-playbook", "--inventory=localhost,", str(playbook))
    return [Path(c["dest"]) for c in cases]


def test_host_variables_become_exactly_those_settings(tmp_path: Path) -> None:
    instruction = 'Say "hello"\\ then\nthe time, in Zürich ✓\t(tab)'
    rich, empty = render(
        tmp_path,
        {
            "board": "respeaker-2mic",
            "live": {
                "voice": "Puck",
                "system_instruction": instruction,
                "proactive_audio": None,  # left out: the default applies
                "setup_timeout_s": 7.5,
            },
            "audio": {"volume": 55, "mic_gain_db": -3.25, "earcons": ["wake", "done"]},
            "button": {"actions": {"hold": "none"}, "hold_s": 2},
            "leds": {
                "brightness": 0.25,
                "states": {"idle": {"pattern": "off"}, "listening": {"colour": "#00ff00"}},
            },
            "behaviour": {"tools": False, "duplex": "half"},
            "wake": {"enabled": True, "threshold": 0.9},
        },
        {},
    )
    assert config.load(empty) == config.Config()  # no variables: every default
    cfg = config.load(rich)
    assert cfg.board == "respeaker-2mic"
    assert (cfg.live.voice, cfg.live.system_instruction) == ("Puck", instruction)
    assert (cfg.live.proactive_audio, cfg.live.setup_timeout_s) == (None, 7.5)
    assert (cfg.audio.volume, cfg.audio.mic_gain_db, cfg.audio.earcons) == (
        55,
        -3.25,
        ("wake", "done"),
    )
    assert cfg.audio.capture_channels == 2  # the board preset under the host's keys
    assert (cfg.button.actions.hold, cfg.button.actions.press, cfg.button.hold_s) == (
        "none",
        "talk",
        2.0,
    )
    assert cfg.leds.driver == "apa102" and cfg.leds.brightness == 0.25
    assert cfg.leds.states["idle"].pattern == "off"
    assert cfg.leds.states["listening"].colour == "#00ff00"
    assert (cfg.behaviour.tools, cfg.wake.enabled, cfg.wake.threshold) == (False, True, 0.9)


def test_the_playbook_parses(tmp_path: Path) -> None:
    result = ansible(tmp_path, "ansible-playbook", "--syntax-check", str(ANSIBLE_DIR / "site.yml"))
    assert "site.yml" in result.stdout
