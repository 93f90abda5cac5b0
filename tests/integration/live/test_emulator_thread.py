"""The emulator from sync code (its own loop in a thread) and as the CLI command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from appliance.live.emulator import Scenario, ThreadedEmulator
from tests.rig.emulator import client_for, collect_turn

pytestmark = pytest.mark.timeout(60)
MODEL = "gemini-3.1-flash-live-preview"


async def _ask(client: Any, text: str) -> str:
    cfg = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=MODEL, config=cfg) as session:
        await session.send_realtime_input(text=text)
        turn = await asyncio.wait_for(collect_turn(session), 20)
    return turn.text


def test_threaded_emulator_serves_sync_callers() -> None:
    with ThreadedEmulator(Scenario(think_ms=0, use_espeak=False)) as emu:
        client = client_for(emu.base_url, emu.ca_file, emu.api_key)
        text = asyncio.run(_ask(client, "from a thread"))
        assert text.startswith("Turn 1: you said from a thread.")
        assert [r.kind for r in emu.records] == ["setup", "text"]
        ca_file = emu.ca_file
    assert not ca_file.exists()  # temporary TLS material is removed on stop


def test_cli_prints_env_and_serves_an_env_configured_sdk(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "appliance.live.emulator", "--cert-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
    try:
        assert proc.stdout is not None
        env: dict[str, str] = {}
        for line in proc.stdout:
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                env[name] = value
            if len(env) == 3:
                break
        assert env["SSL_CERT_FILE"] == str(tmp_path / "ca.pem")
        # An unmodified SDK client configured only by the environment.
        script = (
            "import asyncio; from google import genai; from google.genai import types\n"
            "async def main():\n"
            "    c = genai.Client()\n"
            "    cfg = types.LiveConnectConfig(response_modalities=['TEXT'])\n"
            f"    async with c.aio.live.connect(model='{MODEL}', config=cfg) as s:\n"
            "        await s.send_realtime_input(text='hi')\n"
            "        print(''.join([m.text or '' async for m in s.receive()]))\n"
            "asyncio.run(main())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert out.stdout.startswith("Turn 1: you said hi.")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
