"""The control socket: how `appliance talk|stop|mute|status|ask|say` reach the daemon.

A Unix stream socket in the runtime directory (`/run/appliance/control.sock`), mode
0660, group configurable (`[control] group`), so access is plain file permissions: who
may press the button from a shell is who is in that group. No network, no auth layer.

The protocol is JSON lines, one request per connection:

    -> {"cmd": "status"}
    <- {"ok": true, "state": "idle", ...}

    -> {"cmd": "ask", "text": "what time is it?"}
    <- {"role": "user", "text": "what time is it?"}        (zero or more transcript lines)
    <- {"role": "model", "text": "It is ten past nine."}
    <- {"ok": true}                                        (the turn ended)

    <- {"ok": false, "error": "..."}                        (any failure; ends the reply)

The server side runs on the daemon's asyncio loop and calls a `ControlHandler` the
wiring supplies; the client side is small and synchronous, for the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from appliance.config import ControlConfig
from appliance.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/run/appliance/control.sock")
SOCKET_NAME = "control.sock"
MAX_LINE = 64 * 1024
MAX_CONNECTIONS = 16
"""Open control connections at once; more are refused with one line. systemd grants the
service 1,024 file descriptors: idle connections must not take them all."""
REQUEST_TIMEOUT_S = 5.0
"""A connection that sends no request line within this long is closed."""
MAX_TEXT = 4000
"""Longest `ask`/`say` text accepted; a spoken turn has no use for more."""
COMMANDS = ("talk", "stop", "mute", "status", "timers", "timer_cancel", "ask", "say")
NOT_RUNNING = "is appliance.service running? see `systemctl status appliance`"


def socket_path(config: ControlConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Where the socket is: `[control] socket`, else the runtime directory's, else /run."""
    if config.socket is not None:
        return config.socket
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else DEFAULT_SOCKET


class ControlHandler(Protocol):
    """What the daemon does for each verb; supplied by the wiring."""

    async def talk(self) -> None: ...

    async def stop(self) -> None: ...

    async def mute(self, on: bool) -> None: ...

    async def status(self) -> dict[str, Any]: ...

    async def timers(self) -> list[dict[str, Any]]:
        """The timers and alarms that are set, soonest first."""
        ...

    async def cancel_timer(self, timer_id: str) -> str:
        """Cancel one; what was cancelled (RequestError when there is no such one)."""
        ...

    def ask(self, text: str) -> AsyncIterator[tuple[str, str]]:
        """Send typed text; yield `(role, text)` transcript lines until the turn ends."""
        ...

    def say(self, text: str) -> AsyncIterator[tuple[str, str]]:
        """Have the assistant's voice speak `text`; yields like `ask`."""
        ...


class RequestError(Exception):
    """A request the server refuses; the message goes back to the client."""


class ControlServer:
    """The asyncio side: `await start()`, `await close()` (removes the socket file)."""

    def __init__(self, path: Path, handler: ControlHandler, group: str | None = None) -> None:
        self.path = path
        self.handler = handler
        self.group = group
        self._server: asyncio.base_events.Server | None = None
        self._open = 0
        self._waiting: dict[asyncio.StreamWriter, None] = {}
        """Connections that have not sent their request yet, oldest first."""
        self._overloaded = False
        """Refusing connections now: logged once when it starts and once when it ends."""

    async def start(self) -> None:
        gid = _group_id(self.group) if self.group else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # left by a daemon that did not stop cleanly
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        # chmod after bind: the umask must not decide who may talk to the daemon.
        if gid is not None:
            os.chown(self.path, -1, gid)
        os.chmod(self.path, 0o660)
        log.info("control socket at %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(obj: Mapping[str, Any]) -> None:
            writer.write(json.dumps(obj).encode() + b"\n")
            await writer.drain()

        self._open += 1
        try:
            try:
                self._admit()
                self._waiting[writer] = None
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        line = await reader.readline()
                except ValueError:  # over the reader's limit: refuse, in one line
                    raise RequestError(
                        f"a request is one JSON line of at most {reader_limit_kib(reader)} KiB"
                    ) from None
                except TimeoutError:
                    raise RequestError(f"no request within {REQUEST_TIMEOUT_S:g} s") from None
                finally:
                    self._waiting.pop(writer, None)
                if writer.is_closing():
                    return  # closed to make room for a newer connection
                request = _parse(line)
                await _unless_gone(reader, self._answer(request, send))
            except RequestError as exc:
                await send({"ok": False, "error": str(exc)})
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client went away (Ctrl-C on `appliance ask`)
            except Exception as exc:
                log.exception("control request failed")
                await send({"ok": False, "error": f"the daemon failed: {exc}"})
        except ConnectionError:
            pass
        finally:
            self._open -= 1
            if self._overloaded and self._open <= MAX_CONNECTIONS // 2:
                self._overloaded = False
                log.info("control socket: taking connections again")
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _admit(self) -> None:
        """Over `MAX_CONNECTIONS`, close the oldest connection still silent (so `status`
        gets through a pile of idle ones), or refuse this one when every open one is
        busy. The journal says so once per episode, not once per connection."""
        if self._open <= MAX_CONNECTIONS:
            return
        if self._waiting:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.close()
            self._open_over_cap()
            return
        self._open_over_cap()
        raise RequestError(f"busy: {MAX_CONNECTIONS} control connections are open; try again")

    def _open_over_cap(self) -> None:
        if not self._overloaded:
            self._overloaded = True
            log.warning(
                "control socket: over %d connections; closing idle ones, refusing if all are busy",
                MAX_CONNECTIONS,
            )

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        async for reply in self._dispatch(request):
            await send(reply)

    async def _dispatch(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        h, cmd = self.handler, req["cmd"]
        log.debug("control request %s", cmd)
        if cmd == "talk":
            await h.talk()
        elif cmd == "stop":
            await h.stop()
        elif cmd == "mute":
            on = req.get("on")
            if not isinstance(on, bool):
                raise RequestError('mute needs "on": true or false')
            await h.mute(on)
        elif cmd == "status":
            yield {"ok": True, **await h.status()}
            return
        elif cmd == "timers":
            yield {"ok": True, "timers": await h.timers()}
            return
        elif cmd == "timer_cancel":
            timer_id = req.get("id")
            if not isinstance(timer_id, str) or not timer_id:
                raise RequestError('timer_cancel needs "id": a timer id from `appliance timers`')
            yield {"ok": True, "cancelled": await h.cancel_timer(timer_id)}
            return
        else:  # ask, say
            text = req.get("text")
            if not isinstance(text, str) or not text.strip():
                raise RequestError(f"{cmd} needs some text")
            if len(text) > MAX_TEXT:
                raise RequestError(f"{cmd} text is {len(text)} characters; at most {MAX_TEXT}")
            lines = h.ask(text) if cmd == "ask" else h.say(text)
            async for role, said in lines:
                yield {"role": role, "text": said}
        yield {"ok": True}


async def _unless_gone(reader: asyncio.StreamReader, answering: Any) -> None:
    """Run `answering`, but cancel it if the client hangs up first: an `ask` whose
    client left (Ctrl-C, its own timeout) is withdrawn, not run later for nobody."""
    task = asyncio.ensure_future(answering)

    async def hung_up() -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1024):  # a client sends one line, then only listens
                pass

    gone = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            await cancel_and_wait(task)  # (raises if we are cancelled ourselves)
            log.info("control client left before its request was answered; dropped")
            raise ConnectionResetError("the control client left")
    task.result()


def reader_limit_kib(reader: asyncio.StreamReader) -> int:
    """The longest line the reader takes (asyncio's default: 64 KiB)."""
    return int(getattr(reader, "_limit", 65536)) // 1024


def _parse(line: bytes) -> dict[str, Any]:
    if not line.endswith(b"\n"):
        raise RequestError("a request is one JSON object on one line")
    try:
        req = json.loads(line)
    except ValueError:
        raise RequestError("a request is one JSON object on one line") from None
    if not isinstance(req, dict) or req.get("cmd") not in COMMANDS:
        raise RequestError(f"unknown command; known: {', '.join(COMMANDS)}")
    return req


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ValueError(
            f"control.group: no group {name!r} on this system (create it with "
            f"`groupadd --system {name}` or remove the setting)"
        ) from None


# --- the client (the CLI verbs) -------------------------------------------------------------


class ControlError(Exception):
    """The daemon could not be reached, or refused or failed a request. Message is for people."""


class ControlClient:
    """Blocking client: one connection per request."""

    def __init__(self, path: Path = DEFAULT_SOCKET, timeout_s: float = 10.0) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def talk(self) -> None:
        self.request("talk")

    def stop(self) -> None:
        self.request("stop")

    def mute(self, on: bool) -> None:
        self.request("mute", on=on)

    def status(self) -> dict[str, Any]:
        reply = self.request("status")
        reply.pop("ok", None)
        return reply

    def timers(self) -> list[dict[str, Any]]:
        return list(self.request("timers")["timers"])

    def cancel_timer(self, timer_id: str) -> str:
        return str(self.request("timer_cancel", id=timer_id)["cancelled"])

    def ask(self, text: str, timeout_s: float = 120.0) -> Iterator[tuple[str, str]]:
        """Yield `(role, text)` transcript lines of the reply until the turn ends."""
        return self._lines("ask", text, timeout_s)

    def say(self, text: str, timeout_s: float = 120.0) -> Iterator[tuple[str, str]]:
        return self._lines("say", text, timeout_s)

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its final reply (`{"ok": true, ...}`)."""
        for reply in self.stream(cmd, **args):
            if "ok" in reply:
                return reply
        raise ControlError("the daemon closed the connection without an answer")

    def stream(
        self, cmd: str, timeout_s: float | None = None, **args: Any
    ) -> Iterator[dict[str, Any]]:
        """Send one request; yield every reply line; raise ControlError on `ok: false`."""
        with self._connect() as sock:
            sock.settimeout(timeout_s or self.timeout_s)
            sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            with sock.makefile("rb") as stream:
                while True:
                    try:
                        line = stream.readline(MAX_LINE)
                    except TimeoutError:
                        raise ControlError(
                            f"no answer from the daemon within {sock.gettimeout()} s"
                        ) from None
                    if not line:
                        raise ControlError("the daemon closed the connection without an answer")
                    reply = json.loads(line)
                    if reply.get("ok") is False:
                        raise ControlError(reply.get("error", "the daemon refused the request"))
                    yield reply
                    if "ok" in reply:
                        return

    def _lines(self, cmd: str, text: str, timeout_s: float) -> Iterator[tuple[str, str]]:
        for reply in self.stream(cmd, timeout_s=timeout_s, text=text):
            if "role" in reply:
                yield reply["role"], reply["text"]

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise ControlError(f"no appliance daemon at {self.path}: {NOT_RUNNING}") from None
        except PermissionError:
            sock.close()
            raise ControlError(_permission_hint(self.path)) from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot reach {self.path}: {exc.strerror}; {NOT_RUNNING}") from None
        return sock


def _permission_hint(path: Path) -> str:
    """Name the group that would give access, and how to join it."""
    group = None
    for candidate in (path, path.parent):
        with contextlib.suppress(OSError, KeyError):
            group = grp.getgrgid(candidate.stat().st_gid).gr_name
            break
    who = f"group {group!r}" if group else "the socket's group ([control] group)"
    return (
        f"permission denied on {path}: your user must be in {who}: "
        f"`sudo usermod -aG {group or 'GROUP'} $USER`, then log in again (or use sudo)"
    )
