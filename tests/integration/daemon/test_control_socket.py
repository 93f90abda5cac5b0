"""The control socket over a real Unix socket: the asyncio server and the CLI's client."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config import ControlConfig
from appliance.daemon.control import ControlClient, ControlError, ControlServer, socket_path

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """A handler that records what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def talk(self) -> None:
        self.calls.append(("talk",))

    async def stop(self) -> None:
        self.calls.append(("stop",))

    async def mute(self, on: bool) -> None:
        self.calls.append(("mute", on))

    async def status(self) -> dict[str, Any]:
        return {"state": "idle", "tokens_today": 42}

    async def ask(self, text: str) -> AsyncIterator[tuple[str, str]]:
        self.calls.append(("ask", text))
        yield "user", text
        await asyncio.sleep(0.01)
        yield "model", "It is nine."
        yield "model", "Anything else?"

    async def say(self, text: str) -> AsyncIterator[tuple[str, str]]:
        if text == "boom":
            raise RuntimeError("speaker unplugged")
        self.calls.append(("say", text))
        yield "model", text


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


async def test_verbs_reach_the_handler(sock_path: Path) -> None:
    handler = Recorder()
    async with ControlServer(sock_path, handler):
        client = ControlClient(sock_path)
        await asyncio.to_thread(client.talk)
        await asyncio.to_thread(client.mute, True)
        await asyncio.to_thread(client.stop)
        status = await asyncio.to_thread(client.status)
        lines = await asyncio.to_thread(lambda: list(client.ask("what time is it?")))
        said = await asyncio.to_thread(lambda: list(client.say("dinner is ready")))
    assert handler.calls == [
        ("talk",),
        ("mute", True),
        ("stop",),
        ("ask", "what time is it?"),
        ("say", "dinner is ready"),
    ]
    assert status == {"state": "idle", "tokens_today": 42}
    assert lines == [
        ("user", "what time is it?"),
        ("model", "It is nine."),
        ("model", "Anything else?"),
    ]
    assert said == [("model", "dinner is ready")]
    assert not os.path.exists(sock_path), "close() removes the socket file"  # noqa: ASYNC240


async def test_socket_mode_and_group(sock_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    async with ControlServer(sock_path, Recorder(), group=group):
        st = os.stat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getgid()


async def test_unknown_group_is_a_clear_error(sock_path: Path) -> None:
    with pytest.raises(ValueError, match="no group 'no-such-group-x'"):
        await ControlServer(sock_path, Recorder(), group="no-such-group-x").start()


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        (
            b'{"cmd": "dance"}\n',
            "unknown command; known: talk, stop, mute, status, timers, timer_cancel, ask, say",
        ),
        (b"not json\n", "one JSON object"),
        (b'{"cmd": "mute"}\n', '"on": true or false'),
        (b'{"cmd": "ask", "text": "  "}\n', "ask needs some text"),
        (b'{"cmd": "say", "text": "boom"}\n', "the daemon failed: speaker unplugged"),
    ],
)
async def test_bad_requests_get_an_error_line(
    sock_path: Path, request_line: bytes, message: str
) -> None:
    async with ControlServer(sock_path, Recorder()):
        reader, writer = await asyncio.open_unix_connection(sock_path)
        writer.write(request_line)
        await writer.drain()
        reply = json.loads(await reader.readline())
        assert await reader.readline() == b"", "the error ends the reply"
        writer.close()
    assert reply["ok"] is False
    assert message in reply["error"]


async def test_client_raises_the_servers_error(sock_path: Path) -> None:
    async with ControlServer(sock_path, Recorder()):
        client = ControlClient(sock_path)
        with pytest.raises(ControlError, match="speaker unplugged"):
            await asyncio.to_thread(lambda: list(client.say("boom")))


async def test_stale_socket_file_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: a daemon that was killed
    async with ControlServer(sock_path, Recorder()):
        assert await asyncio.to_thread(ControlClient(sock_path).status) == {
            "state": "idle",
            "tokens_today": 42,
        }


def test_daemon_not_running(tmp_path: Path) -> None:
    with pytest.raises(ControlError) as err:
        ControlClient(tmp_path / "control.sock").status()
    assert "is appliance.service running? see `systemctl status appliance`" in str(err.value)


def _status_as_nobody(path: Path) -> str:
    """Ask for the status from a forked child that dropped root (root passes every check)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so no file but the socket needs to be reachable
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            ControlClient(path).status()
            message = "connected"
        except ControlError as exc:
            message = str(exc)
        except BaseException as exc:
            message = repr(exc)
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


def test_permission_denied_names_the_group() -> None:
    run = Path(tempfile.mkdtemp(prefix="appliance-control-"))
    path = run / "control.sock"

    run.chmod(0o755)

    async def main() -> str:
        async with ControlServer(path, Recorder()):
            if os.geteuid() == 0:
                return await asyncio.to_thread(_status_as_nobody, path)
            path.chmod(0o000)
            try:
                ControlClient(path).status()
            except ControlError as exc:
                return str(exc)
            return "connected"

    try:
        message = asyncio.run(main())
    finally:
        shutil.rmtree(run, ignore_errors=True)
    group = grp.getgrgid(os.getgid()).gr_name
    assert message.startswith(f"permission denied on {path}: your user must be in group {group!r}")
    assert f"sudo usermod -aG {group} $USER" in message


def test_socket_path_defaults() -> None:
    assert socket_path(ControlConfig(), {}) == Path("/run/appliance/control.sock")
    assert socket_path(ControlConfig(), {"RUNTIME_DIRECTORY": "/run/x"}) == Path(
        "/run/x/control.sock"
    )
    assert socket_path(
        ControlConfig(socket=Path("/tmp/c.sock")), {"RUNTIME_DIRECTORY": "/run/x"}
    ) == Path("/tmp/c.sock")
