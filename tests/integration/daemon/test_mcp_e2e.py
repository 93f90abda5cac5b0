"""Home Assistant (any MCP server) as the model's tools, through the whole stack: the
daemon on the JACK rig, the Live emulator over TLS with the real SDK, and a real MCP
server (`tests/rig/mcp_home.py`, the `mcp` package's own server framework) in a process
of its own, over Streamable HTTP with a bearer token, or over stdio.

The emulator's scripted turn calls the server's tool; the server records the call; the
answer goes back with the call's id and the model speaks it (the emulator's default
follow-up says what the tool answered, so the transcript shows the result arrived)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.audio.fakes import eventually
from appliance.daemon.control import ControlClient
from appliance.daemon.state import Stop
from appliance.live.emulator import Emulator, Reply, ToolCallSpec
from appliance.tools.mcp.source import McpSource
from tests.rig import mcp_home
from tests.rig.appliance import Running, running_appliance
from tests.rig.emulator import tone
from tests.rig.jack import JackAudio
from tests.rig.mcp_home import HomeServer, free_port

pytest.importorskip("mcp")

pytestmark = [pytest.mark.jack, pytest.mark.timeout(90)]

TOKEN = mcp_home.TOKEN


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    from tests.rig.gpio import mock_pins

    with mock_pins() as factory:
        yield factory


@pytest.fixture
async def home(tmp_path: Path) -> AsyncIterator[HomeServer]:
    server = HomeServer(tmp_path, hang=("HassTurnOff",))
    await server.start()
    try:
        yield server
    finally:
        server.kill()


def token_file(tmp: Path) -> str:
    path = tmp / "ha-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def http_server(tmp: Path, url: str, **keys: Any) -> dict[str, Any]:
    return {"servers": [{"name": "home", "url": url, "token_file": token_file(tmp), **keys}]}


async def ask(r: Running, text: str) -> str:
    """`appliance ask`: what the model said."""
    assert r.app.control is not None
    client = ControlClient(r.app.control.path)
    lines = await asyncio.to_thread(lambda: list(client.ask(text)))
    return "".join(t for role, t in lines if role == "model")


def tool_responses(emu: Emulator) -> list[dict[str, Any]]:
    """The function responses the emulator received, as the model takes them."""
    out: list[dict[str, Any]] = []
    for record in emu.recorder.of("tool_response"):
        out += record.message["tool_response"]["function_responses"]
    return out


async def test_the_model_turns_on_a_light_through_home_assistant(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    pins: MockFactory,
    home: HomeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    emu.scenario.default_reply = Reply(
        text="Turning it on.",
        pcm=tone(610, 300),
        tool_call=ToolCallSpec("home_HassTurnOn", {"name": "Kitchen Light"}, id="fc-light"),
    )
    mcp = http_server(tmp_path, home.url, deny=["HassBroken"])
    async with running_appliance(jack_audio, emu, tmp_path, mcp=mcp) as r:
        said = await ask(r, "turn on the kitchen light")
        await r.wait_state("idle", after=1)
    # The server saw the call, with the model's arguments.
    assert home.calls() == [
        {"tool": "HassTurnOn", "args": {"name": "Kitchen Light", "area": None, "domain": None}}
    ]
    # Declared next to the built-in tools, NON_BLOCKING; the denied one never.
    setup = emu.connections[0].setup
    assert setup is not None
    assert {"home_HassTurnOn", "home_HassTurnOff", "home_GetLiveContext"} <= set(
        setup.function_names
    )
    assert "get_local_time" in setup.function_names
    assert "home_HassBroken" not in setup.function_names
    declared = {
        d["name"]: d for t in setup.raw["tools"] for d in t.get("function_declarations") or ()
    }
    assert declared["home_HassTurnOn"]["behavior"] == "NON_BLOCKING"
    assert "name" in declared["home_HassTurnOn"]["parameters"]["properties"]
    # The answer went back with the call's id, and the model spoke it when free.
    (response,) = tool_responses(emu)
    assert response["id"] == "fc-light" and response["name"] == "home_HassTurnOn"
    success = response["response"]["result"]["data"]["success"]
    assert success == [{"name": "Kitchen Light", "type": "entity", "id": "light.kitchen"}]
    assert emu.connections[0].tool_schedulings == ["WHEN_IDLE"]
    assert "Turning it on." in said and "light.kitchen" in said
    # The journal: the call, once (the daemon's line), no HTTP request lines, no token.
    assert len([m for m in caplog.messages if m.startswith("tool home_HassTurnOn(")]) == 1
    assert "HTTP Request" not in caplog.text and TOKEN not in caplog.text


async def test_a_server_that_dies_mid_call_gets_an_error_answer_and_the_talk_goes_on(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    pins: MockFactory,
    home: HomeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu.scenario.replies = [
        Reply(
            text="Turning it off.",
            pcm=tone(610, 300),
            tool_call=ToolCallSpec("home_HassTurnOff", {"name": "Kitchen Light"}),
        ),
        Reply(text="Still here.", pcm=tone(610, 300)),
    ]
    caplog.set_level(logging.INFO)
    mcp = http_server(tmp_path, home.url, timeout_s=30)
    # (a conversation that outlasts the kill however slow the machine is)
    behaviour = {"conversation_timeout_s": 30}
    async with running_appliance(jack_audio, emu, tmp_path, mcp=mcp, behaviour=behaviour) as r:
        asking = asyncio.create_task(ask(r, "turn off the kitchen light"))
        await eventually(lambda: len(home.calls()) == 1, within_s=20)
        home.kill()  # Home Assistant restarts while the light is being switched
        assert "Turning it off." in await asyncio.wait_for(asking, 20)
        # The model tells the error when it is free (the emulator's follow-up names it).
        spoken = lambda: "".join(sent.text or "" for sent in emu.recorder.sent)  # noqa: E731
        await eventually(lambda: "cannot be reached" in spoken(), within_s=20)
        assert "Still here." in await ask(r, "are you there?")  # the conversation goes on
    (response,) = tool_responses(emu)
    error = response["response"]["error"]
    assert "home cannot be reached" in error
    warnings = [m for m in caplog.messages if "a call failed" in m]
    assert len(warnings) == 1 and TOKEN not in caplog.text


async def test_a_server_down_at_start_costs_its_tools_once_in_the_journal(
    jack_audio: JackAudio,
    emu: Emulator,
    tmp_path: Path,
    pins: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    nobody = f"http://127.0.0.1:{free_port()}/api/mcp"
    emu.scenario.default_reply = Reply(text="Hello.", pcm=tone(610, 300))
    async with running_appliance(jack_audio, emu, tmp_path, mcp=http_server(tmp_path, nobody)) as r:
        for n in range(2):  # two conversations: the next one tries again
            assert "Hello." in await ask(r, "hello")
            r.app.post(Stop())
            await r.wait_state("idle", after=len(r.states) - 1)
            setup = emu.connections[n].setup
            assert setup is not None and "get_local_time" in setup.function_names
            assert not [name for name in setup.function_names if name.startswith("home_")]
    down = [m for m in caplog.messages if "tools of MCP server home unavailable" in m]
    assert len(down) == 1 and "ConnectError" in down[0]
    assert TOKEN not in caplog.text


async def test_a_stdio_server_with_an_allow_list(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory
) -> None:
    server = HomeServer(tmp_path)
    emu.scenario.default_reply = Reply(
        text="Let me look.", pcm=tone(610, 300), tool_call=ToolCallSpec("kitchen_GetLiveContext")
    )
    mcp = {
        "servers": [
            {"name": "kitchen", "command": server.argv("--stdio"), "allow": ["GetLiveContext"]}
        ]
    }
    async with running_appliance(jack_audio, emu, tmp_path, mcp=mcp) as r:
        # Started with the service, in the background; kept between conversations.
        (source,) = [s for s in r.app.toolbox.sources if isinstance(s, McpSource)]
        await eventually(lambda: source.ready, within_s=20)
        said = await ask(r, "how warm is the kitchen?")
        await r.wait_state("idle", after=1)
    setup = emu.connections[0].setup
    assert setup is not None
    assert [n for n in setup.function_names if n.startswith("kitchen_")] == [
        "kitchen_GetLiveContext"
    ]
    assert server.calls() == [{"tool": "GetLiveContext", "args": {}}]
    (response,) = tool_responses(emu)
    assert f"state: '{mcp_home.SENSOR_C}'" in response["response"]["result"]
    assert str(mcp_home.SENSOR_C) in said


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    """Enough TOML for the rig's config (strings, numbers, lists of strings)."""
    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


async def test_a_server_added_by_reload_is_used_by_the_next_conversation(
    jack_audio: JackAudio, emu: Emulator, tmp_path: Path, pins: MockFactory, home: HomeServer
) -> None:
    emu.scenario.default_reply = Reply(text="Hello.", pcm=tone(610, 300))
    async with running_appliance(jack_audio, emu, tmp_path) as r:
        assert "Hello." in await ask(r, "hello")
        r.app.post(Stop())
        await r.wait_state("idle", after=len(r.states) - 1)
        rig = r.app.config.model_dump(mode="json", include={"live", "audio", "behaviour"})
        tables = {
            "live": {k: v for k, v in rig["live"].items() if k in ("endpoint", "ca_file")},
            "audio": {k: rig["audio"][k] for k in ("capture_device", "playback_device", "earcons")},
            "behaviour": {"conversation_timeout_s": 3, "half_duplex_tail_ms": 200},
            "control": {"socket": str(tmp_path / "control.sock")},
        }
        server = http_server(tmp_path, home.url)["servers"][0]
        conf = tmp_path / "config.toml"
        conf.write_text(_toml(tables) + "[[mcp.servers]]\n" + _toml_pairs(server))
        r.app.config_path = conf
        await r.app.reload()
        await eventually(lambda: r.app.config.mcp.servers != (), within_s=5)
        assert "Hello." in await ask(r, "hello again")
    first, second = (c.setup for c in emu.connections[:2])
    assert first is not None and second is not None
    assert not [n for n in first.function_names if n.startswith("home_")]
    assert "home_HassTurnOn" in second.function_names


def _toml_pairs(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
