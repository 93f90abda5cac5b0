"""MCP servers as tool sources, on the fake link: what is declared (names, schemas,
allow/deny), how calls are answered (results, tool errors, a server that is slow or
gone), what the journal says (once), and when connections open and close. The real
`mcp` client against a real server is in tests/integration/daemon/test_mcp_e2e.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from appliance import config as config_mod
from appliance.audio.fakes import eventually
from appliance.config import McpServerConfig
from appliance.live.setup import connect_config
from appliance.tools.builtin import BuiltinTools
from appliance.tools.mcp import declare
from appliance.tools.mcp.fake import FakeServer
from appliance.tools.mcp.source import McpSource, Outcome, RemoteTool, ServerUnreachable, read_token
from appliance.tools.toolbox import Toolbox

# Home Assistant's Assist tools as its MCP server lists them (voluptuous-openapi schemas).
HA_TURN_ON = RemoteTool(
    "HassTurnOn",
    "Turns on/opens/presses a device or entity.",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "area": {"type": "string"},
            "floor": {"type": "string"},
            "domain": {"type": "array", "items": {"type": "string", "enum": ["light", "switch"]}},
        },
        "required": [],
    },
)
LIVE_CONTEXT = RemoteTool(
    "GetLiveContext",
    "Provides real-time information about the CURRENT state of the home.",
    {"type": "object", "properties": {}},
)
# As a pydantic-built server (the mcp package's MCPServer) lists an optional argument.
PYDANTIC_STYLE = {
    "type": "object",
    "title": "turn_offArguments",
    "properties": {
        "name": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "default": None,
            "description": "Name of the device",
            "title": "Name",
        },
        "brightness": {"$ref": "#/$defs/Level"},
    },
    "$defs": {"Level": {"type": "integer", "minimum": 0, "maximum": 100}},
}


def server_config(**keys: Any) -> McpServerConfig:
    return McpServerConfig.model_validate({"name": "home", "url": "http://ha:8123/api/mcp", **keys})


def source(server: FakeServer, **keys: Any) -> McpSource:
    return McpSource(server_config(**keys), make_link=server.make_link)


def home() -> FakeServer:
    return FakeServer(tools=[HA_TURN_ON, LIVE_CONTEXT])


async def test_tools_are_declared_prefixed_non_blocking_and_the_sdk_takes_them() -> None:
    box = Toolbox([BuiltinTools(False), source(home())])
    session = await box.open()
    declared = {d["name"]: d for d in session.declarations()}
    turn_on = declared["home_HassTurnOn"]
    assert turn_on["behavior"] == "NON_BLOCKING"
    assert turn_on["parameters"]["properties"]["domain"] == {
        "type": "ARRAY",
        "items": {"type": "STRING", "enum": ["light", "switch"]},
    }
    assert "parameters" not in declared["home_GetLiveContext"]  # no empty OBJECT
    assert session.scheduling_of("home_HassTurnOn") == "WHEN_IDLE"
    # The real SDK builds the setup from them, as the daemon does.
    live = config_mod.Config().live
    built = connect_config(
        live, automatic_activity_detection=True, function_declarations=session.declarations()
    )
    assert built.tools is not None
    names = [f.name for t in built.tools for f in t.function_declarations or ()]
    assert "home_HassTurnOn" in names and "get_volume" in names


def test_a_pydantic_schema_keeps_descriptions_and_refs_resolve() -> None:
    params = declare.parameters(PYDANTIC_STYLE)
    assert params == {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING", "description": "Name of the device", "nullable": True},
            "brightness": {"type": "INTEGER", "minimum": 0, "maximum": 100},
        },
    }


def test_schemas_that_cannot_be_said_are_refused() -> None:
    with pytest.raises(declare.Unsupported, match="reference"):
        declare.parameters({"type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}})
    loop = {"type": "object", "properties": {"a": {"$ref": "#/$defs/N"}}}
    loop["$defs"] = {"N": {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}}}
    with pytest.raises(declare.Unsupported, match="deeply"):
        declare.parameters(loop)
    with pytest.raises(declare.Unsupported, match="argument name"):
        declare.parameters({"type": "object", "properties": {"entity-id": {"type": "string"}}})


def test_function_names_fit_gemini_and_stay_unique() -> None:
    assert declare.function_name("home", "HassTurnOn", set()) == "home_HassTurnOn"
    odd = declare.function_name("home", "lights/on now", set())
    assert odd == "home_lights_on_now"
    other = declare.function_name("home", "lights on/now", {odd})
    assert other.startswith("home_lights_on_now_") and other != odd
    long = declare.function_name("home", "x" * 200, set())
    assert len(long) == 64


async def test_allow_and_deny_lists() -> None:
    session = await Toolbox([source(home(), deny=["HassTurnOn"])]).open()
    assert [d["name"] for d in session.declarations()] == ["home_GetLiveContext"]
    session = await Toolbox([source(home(), allow=["HassTurnOn"])]).open()
    assert [d["name"] for d in session.declarations()] == ["home_HassTurnOn"]


async def test_an_allowed_tool_the_server_lacks_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = Toolbox([source(home(), allow=["HassTurnOn", "HassLightSet"])])
    for _ in range(3):
        await (await box.open()).close()
    said = [m for m in caplog.messages if "HassLightSet" in m]
    assert len(said) == 1 and "does not list" in said[0]


async def test_a_call_runs_on_the_server_and_json_comes_back_as_json() -> None:
    server = home()
    server.answer = lambda name, args: Outcome(False, '{"success": [{"id": "light.kitchen"}]}')
    session = await Toolbox([source(server)]).open()
    answer = await session.run(None, "home_HassTurnOn", {"name": "Kitchen"})  # type: ignore[arg-type]
    assert answer == {"result": {"success": [{"id": "light.kitchen"}]}}
    assert server.calls == [("HassTurnOn", {"name": "Kitchen"})]


async def test_a_tool_error_is_an_error_answer_not_a_server_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = home()
    server.answer = lambda name, args: Outcome(True, "MatchFailedError: no device named Attic")
    session = await Toolbox([source(server)]).open()
    answer = await session.run(None, "home_HassTurnOn", {"name": "Attic"})  # type: ignore[arg-type]
    assert answer == {"error": "MatchFailedError: no device named Attic"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_slow_or_gone_server_answers_with_errors_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    server = home()
    server.call_delay_s = 5
    session = await Toolbox([source(server, timeout_s=0.05)]).open()
    slow = await session.run(None, "home_HassTurnOn", {})  # type: ignore[arg-type]
    assert slow == {"error": "home did not answer within 0.05 seconds"}
    server.dead = True
    for _ in range(3):
        gone = await session.run(None, "home_HassTurnOn", {})  # type: ignore[arg-type]
        assert gone["error"].startswith("home cannot be reached")
    failing = [m for m in caplog.messages if "a call failed" in m]
    assert len(failing) == 1 and "no answer within 0.05 s" in failing[0]
    server.dead, server.call_delay_s = False, 0
    assert await session.run(None, "home_HassTurnOn", {}) == {"result": "ok"}  # type: ignore[arg-type]
    assert [m for m in caplog.messages if "answers calls again" in m]


async def test_an_http_server_gets_a_connection_per_conversation() -> None:
    server = home()
    box = Toolbox([source(server)])
    session = await box.open()
    assert (server.opened, server.closed) == (1, 0)
    await session.close()  # the connection closes in the background
    await eventually(lambda: server.closed == 1, within_s=5)
    server.down = True  # down for the next conversation: it goes on without the tools
    assert (await box.open()).declarations() == []
    server.down = False  # and the one after has them again
    assert len((await box.open()).declarations()) == 2


async def test_a_listing_cut_short_leaves_no_connection_open() -> None:
    server = home()
    server.open_delay_s = 5
    session = await Toolbox([source(server)], list_timeout_s=0.05).open()
    assert session.declarations() == []
    assert server.opened == 0  # the open was cancelled before it finished


async def test_a_stdio_server_starts_with_the_service_and_is_kept() -> None:
    server = home()
    stdio = McpSource(
        McpServerConfig(name="kitchen", command=("kitchen-mcp",)), make_link=server.make_link
    )
    box = Toolbox([stdio])
    box.prepare()
    await eventually(lambda: stdio.ready, within_s=5)
    assert server.opened == 1
    for _ in range(2):
        session = await box.open()
        assert len(session.declarations()) == 2
        await session.close()
    assert (server.opened, server.closed) == (1, 0)  # one process, kept
    server.exit()  # it died between conversations: the next one starts it again
    assert not stdio.ready
    assert len((await box.open()).declarations()) == 2
    assert server.opened == 2
    await box.close()
    assert server.closed == 1 and not stdio.ready


def test_the_token_comes_from_a_file_or_a_credential_and_is_redacted(tmp_path: Path) -> None:
    from appliance.daemon import service

    secret = "eyJhbGciOiJIUzI1NiJ9.long-lived-token"
    file = tmp_path / "token"
    file.write_text(secret + "\n")
    assert read_token(server_config(token_file=str(file)), {}) == secret
    assert service.SECRETS.redact(f"Bearer {secret}") == f"Bearer {service.REDACTED}"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ha-token").write_text(secret)
    config = server_config(token_credential="ha-token")
    assert read_token(config, {"CREDENTIALS_DIRECTORY": str(creds)}) == secret
    with pytest.raises(ServerUnreachable, match="LoadCredential=ha-token"):
        read_token(config, {})
    with pytest.raises(ServerUnreachable, match="cannot read the token"):
        read_token(server_config(token_file=str(tmp_path / "missing")), {})


async def test_a_token_that_cannot_be_read_costs_the_tools_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = McpSource(server_config(token_file=str(tmp_path / "nope")))
    session = await Toolbox([missing], list_timeout_s=60).open()  # (imports mcp first)
    assert session.declarations() == []
    assert "cannot read the token in" in caplog.text


CONFIG = Path("/etc/appliance/config.toml")


def parse(text: str) -> config_mod.Config:
    return config_mod.parse(text, CONFIG)


def test_config_reads_servers() -> None:
    cfg = parse(
        '[[mcp.servers]]\nname = "home"\nurl = "http://homeassistant.local:8123/api/mcp"\n'
        'token_credential = "ha-token"\ndeny = ["HassTurnOff"]\ntimeout_s = 5\n'
        '[[mcp.servers]]\nname = "notes"\ncommand = ["/usr/local/bin/notes-mcp", "--ro"]\n'
    )
    home_cfg, notes = cfg.mcp.servers
    assert home_cfg.token_credential == "ha-token" and home_cfg.deny == ("HassTurnOff",)
    assert notes.command == ("/usr/local/bin/notes-mcp", "--ro") and notes.allow is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "home"\nurl = "http://ha:8123/api/mcp"\ntoken = "abc"',
            "mcp.servers.0: token: a token is never written in config.toml",
        ),
        ('name = "home"\nurl = "http://ha/api/mcp"\ntokn_file = "/x"', "did you mean 'token_file'"),
        ('name = "home"', "give either url or command"),
        ('name = "home"\ncommand = ["x"]\ntimeout_s = "5"', "timeout_s: Input should be a number"),
        ('name = "home"\ncommand = ["x"]\ntoken_file = "/t"', "a token goes with url"),
        ('name = "home"\nurl = "http://ha/api/mcp"\ntoken_file = "t"', "absolute path"),
        ('name = "home"\nurl = "ha:8123"', "mcp.servers.0.url"),
    ],
)
def test_config_faults_name_the_key_and_file(text: str, message: str) -> None:
    with pytest.raises(config_mod.ConfigError) as caught:
        parse("[[mcp.servers]]\n" + text + "\n")
    assert message in str(caught.value) and str(CONFIG) in str(caught.value)
    assert "abc" not in str(caught.value)


def test_config_without_the_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mcp" else real(name, *a)
    )
    with pytest.raises(config_mod.ConfigError, match=r"'mcp' package is not installed.*\[mcp\]"):
        parse('[[mcp.servers]]\nname = "home"\ncommand = ["x"]\n')
    assert parse("").mcp.servers == ()  # no servers: no package needed


def test_the_shipped_example_is_a_valid_server() -> None:
    from tests.unit.test_config import REPO, _uncommented

    text = _uncommented((REPO / "config.toml").read_text())
    start = text.index("[[mcp.servers]]")
    (server,) = parse(text[start : text.index("\n[logging]")]).mcp.servers
    assert server.url == "http://homeassistant.local:8123/api/mcp"
    assert server.token_credential == "ha-token" and server.timeout_s == 10.0
