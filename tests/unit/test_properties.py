"""Property-based tests: whatever a config file, a state file, a control-socket line or a
server frame holds, the answer is a clear error or a valid result, never a traceback.

Each property runs the real parser (tomllib and pydantic for config, pydantic for state
files, the control server over a real Unix socket, the google-genai SDK's own model for
server frames and the client's dispatcher behind it) on generated input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import config
from appliance.audio.volume import Volume
from appliance.daemon.control import ControlServer, RequestError
from appliance.daemon.memory import HandleStore, UsageBook
from appliance.timers.book import TimerBook

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- config -------------------------------------------------------------------------------

SECTIONS = list(config.Config.model_fields)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def section_strategy(name: str) -> st.SearchStrategy[dict[str, Any]]:
    model = config.Config.model_fields[name].annotation
    keys = list(getattr(model, "model_fields", {})) or ["x"]
    return st.dictionaries(st.sampled_from([*keys, "typo_key"]), values, max_size=4)


raw_configs = st.fixed_dictionaries(
    {}, optional={name: section_strategy(name) | values for name in SECTIONS}
)


@SETTINGS
@given(raw=raw_configs)
def test_any_config_table_is_valid_or_a_config_error(raw: dict[str, Any]) -> None:
    try:
        cfg = config.from_dict(raw, "/etc/appliance/config.toml")
    except config.ConfigError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)
        assert all("/etc/appliance/config.toml: " in line for line in str(exc).splitlines())
    else:
        assert isinstance(cfg, config.Config)


@SETTINGS
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_config_file_is_valid_or_a_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    try:
        config.load(path)
    except config.ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")


# --- state files --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
state_content = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["percent", "handle", "saved_at", "day", "tally", "entries", "next_id"]),
        json_values,
        max_size=3,
    ).map(lambda v: json.dumps(v).encode())
)


@SETTINGS
@given(content=state_content)
def test_any_state_file_loads_or_falls_back_to_defaults(tmp_path: Path, content: bytes) -> None:
    for name in ("volume.json", "session.json", "usage.json", "timers.json"):
        (tmp_path / name).write_bytes(content)
    volume = Volume(config.AudioConfig(volume=40), tmp_path)
    assert 0 <= volume.percent <= 100
    handle = HandleStore(tmp_path, 600).load()
    assert handle is None or isinstance(handle, str)
    assert UsageBook(tmp_path).today().turns >= 0
    assert all(e.id for e in TimerBook(tmp_path).upcoming())


# --- control-socket lines -----------------------------------------------------------------


class Handler:
    async def talk(self) -> None: ...

    async def stop(self) -> None: ...

    async def mute(self, on: bool) -> None: ...

    async def status(self) -> dict[str, Any]:
        return {"state": "idle"}

    async def timers(self) -> list[dict[str, Any]]:
        return []

    async def cancel_timer(self, timer_id: str) -> str:
        raise RequestError(f"no timer or alarm {timer_id!r}")

    async def ask(self, text: str) -> Any:
        yield ("model", "ok")

    async def say(self, text: str) -> Any:
        yield ("model", text)


@pytest.fixture(scope="module")
def control_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real control server in a thread of its own (the examples are plain code)."""
    path = tmp_path_factory.mktemp("control") / "control.sock"
    loop = asyncio.new_event_loop()
    server = ControlServer(path, Handler())  # type: ignore[arg-type]
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    yield path
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


commands = st.sampled_from(
    ["talk", "stop", "mute", "status", "timers", "timer_cancel", "ask", "say", "dance"]
)
requests = st.one_of(
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    st.dictionaries(st.sampled_from(["cmd", "on", "text", "id"]), json_values, max_size=3).map(
        lambda d: json.dumps(d).encode() + b"\n"
    ),
    st.builds(
        lambda cmd, extra: json.dumps({"cmd": cmd, **extra}).encode() + b"\n",
        commands,
        st.dictionaries(st.sampled_from(["on", "text", "id"]), json_values, max_size=2),
    ),
)


@SETTINGS
@given(line=requests)
def test_any_control_line_gets_json_answers_ending_in_ok_or_an_error(
    control_socket: Path, line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(control_socket))
        sock.sendall(line)
        replies = [json.loads(raw) for raw in sock.makefile("rb").read().splitlines()]
    assert replies, "no answer at all"
    *_, last = replies
    assert last["ok"] is True or (last["ok"] is False and last["error"].strip())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- server frames ------------------------------------------------------------------------

KNOWN_KEYS = [
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
]
content_keys = [
    "modelTurn",
    "turnComplete",
    "interrupted",
    "generationComplete",
    "inputTranscription",
    "outputTranscription",
]
frames = st.one_of(
    st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=3),
    st.fixed_dictionaries(
        {"serverContent": st.dictionaries(st.sampled_from(content_keys), json_values, max_size=3)}
    ),
    st.fixed_dictionaries(
        {
            "toolCall": st.fixed_dictionaries(
                {
                    "functionCalls": st.lists(
                        st.dictionaries(
                            st.sampled_from(["id", "name", "args"]), json_values, max_size=3
                        ),
                        max_size=2,
                    )
                }
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "serverContent": st.fixed_dictionaries(
                {
                    "modelTurn": st.fixed_dictionaries(
                        {
                            "parts": st.lists(
                                st.fixed_dictionaries(
                                    {
                                        "inlineData": st.fixed_dictionaries(
                                            {
                                                "data": st.binary(max_size=64).map(
                                                    lambda b: (
                                                        __import__("base64").b64encode(b).decode()
                                                    )
                                                ),
                                                "mimeType": st.text(max_size=30)
                                                | st.sampled_from(
                                                    [
                                                        "audio/pcm;rate=24000",
                                                        "audio/pcm;rate=0",
                                                        "audio/pcm;rate=-5",
                                                        "audio/pcm;rate=abc",
                                                        "audio/mpeg",
                                                    ]
                                                ),
                                            }
                                        )
                                    }
                                ),
                                max_size=2,
                            )
                        }
                    )
                }
            )
        }
    ),
)


@SETTINGS
@given(frame=frames)
def test_any_server_frame_is_refused_by_the_sdk_or_dispatched_to_known_events(
    frame: dict[str, Any],
) -> None:
    from google.genai import types
    from pydantic import SecretStr, ValidationError

    from appliance.live import events as ev
    from appliance.live.client import LiveClient

    try:
        message = types.LiveServerMessage.model_validate(frame)
    except ValidationError:
        return  # the SDK refuses it before our code sees it (the client reconnects)
    client = LiveClient(config.LiveConfig(), SecretStr("k" * 39))
    client._dispatch(message)
    emitted = []
    while not client._events.empty():
        emitted.append(client._events.get_nowait())
    assert all(type(e).__module__ == ev.__name__ for e in emitted)
