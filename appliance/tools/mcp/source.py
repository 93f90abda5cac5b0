"""An MCP server as a tool source: its tools, listed as each conversation opens, become
functions the model may call.

Each conversation gets a connection of its own (`Link`), opened by `tools()` (which the
toolbox bounds) and closed by `release()` when the conversation ends, so a server that
was down is simply tried again next time. Tools are declared `server_tool` (unique next
to the built-in ones), NON_BLOCKING (the model keeps talking while Home Assistant works)
and answered WHEN_IDLE (the model tells the result when it is free). A call that fails
gets an `error` answer the model can speak about; when the server itself is the problem
(no answer in `timeout_s`, connection lost) the journal says so once, and again once it
answers again, not at every call.

The `Link` is an interface so that unit tests run on `fake.FakeLink`; `link.McpLink` is
the real one (the `mcp` package, imported only when servers are configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from appliance.tools.base import Tool, ToolContext
from appliance.tools.mcp import declare

if TYPE_CHECKING:
    from appliance.config import McpServerConfig

log = logging.getLogger(__name__)

SCHEDULING = "WHEN_IDLE"
DESCRIPTION_MAX = 1000


class ServerUnreachable(Exception):
    """The server cannot be reached, or went away (not: a tool said no)."""


@dataclass(frozen=True)
class RemoteTool:
    """A tool as the server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """A call's result: the text blocks (JSON is passed on as JSON), or structured
    content when there is no text; `is_error` when the tool reports a failure."""

    is_error: bool
    text: str = ""
    structured: Any = None


class Link(Protocol):
    """A connection to a server (one conversation's, or a stdio server's)."""

    tools: list[RemoteTool]

    @property
    def alive(self) -> bool: ...

    async def open(self) -> None: ...

    async def relist(self) -> list[RemoteTool]: ...

    async def call(self, name: str, args: dict[str, Any], timeout_s: float) -> Outcome: ...

    async def close(self) -> None: ...


LinkFactory = Callable[["McpServerConfig"], Awaitable[Link]]
"""Makes an unopened link for a server's config (reads its token)."""


class McpSource:
    """One `[[mcp.servers]]` entry as a `ToolSource`.

    A Streamable HTTP server gets a connection per conversation (opened as it opens,
    closed as it ends). A stdio server is a process, slow to start (a second or more
    for a Python server here, several on a Pi Zero 2 W): it is started in the background
    by `prepare()` at service start, kept between conversations (each lists its tools
    again on it), started again when it has died, and stopped by `close()`.
    """

    def __init__(self, config: McpServerConfig, make_link: LinkFactory | None = None) -> None:
        self.config = config
        self.name = f"MCP server {config.name}"
        self.persistent = config.command is not None
        self._make_link = make_link or real_link
        self._preload: Callable[[], None] | None = None if make_link else _preload
        self._imported: asyncio.Task[None] | None = None
        self._link: Link | None = None
        self._opening: asyncio.Task[Link] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        """Connections closing in the background (`close()` waits for them)."""
        self._calls_failing = False
        self._said: set[str] = set()
        """Complaints about the listing already logged (once per service run)."""

    @property
    def ready(self) -> bool:
        """A stdio server is running and listed its tools (tests wait for it)."""
        task = self._opening
        return bool(
            task is not None
            and task.done()
            and not task.cancelled()
            and task.exception() is None
            and task.result().alive
        )

    def prepare(self) -> None:
        """At service start: import the client library in a thread (seconds on a Pi
        Zero 2 W: not before READY=1, not in the event loop), and start a stdio server,
        so that the first conversation finds both ready."""
        self._import()
        if self.persistent:
            self._start_opening()

    def _import(self) -> asyncio.Task[None]:
        if self._imported is None or self._imported.cancelled():
            preload = self._preload
            self._imported = asyncio.create_task(
                asyncio.to_thread(preload) if preload else asyncio.sleep(0)
            )
            self._imported.add_done_callback(_retrieve)
        return self._imported

    async def tools(self) -> list[Tool]:
        if self.persistent:
            # The toolbox's bound cancels this wait, not the start: a slow server is
            # ready for the next conversation.
            link = await asyncio.shield(self._start_opening())
            link.tools = await link.relist()
            return self._declare(link)
        await self.release()  # one a conversation left behind, if any
        link = await self._open()
        self._link = link
        return self._declare(link)

    async def release(self) -> None:
        """The conversation ended: close its connection (a stdio server keeps running),
        in the background: a server slow to say goodbye (up to `link.CLOSE_TIMEOUT_S`)
        does not hold up the daemon's loop as the conversation ends."""
        if self.persistent:
            return
        link, self._link = self._link, None
        if link is not None:
            self._spawn_close(link)

    async def close(self) -> None:
        """The service stops (or the config changed): close everything."""
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            with contextlib.suppress(BaseException):
                self._link = self._link or await opening
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        if self._closing:
            await asyncio.wait(set(self._closing))

    def _start_opening(self) -> asyncio.Task[Link]:
        """The task opening the persistent link; a new one when the last failed or the
        link has died since."""
        task = self._opening
        if task is not None and task.done():
            failed = task.cancelled() or task.exception() is not None
            if failed or not task.result().alive:
                if not failed:
                    self._spawn_close(task.result())
                task = None
        if task is None:
            task = asyncio.create_task(self._open(), name=f"mcp-open-{self.config.name}")
            task.add_done_callback(_retrieve)
            self._opening = task
        return task

    async def _open(self) -> Link:
        await asyncio.shield(self._import())
        link = await self._make_link(self.config)
        try:
            await link.open()
        except BaseException:
            self._spawn_close(link)  # in the background: the toolbox's bound holds
            raise
        return link

    def _spawn_close(self, link: Link) -> None:
        task = asyncio.create_task(link.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(_retrieve)

    def _declare(self, link: Link) -> list[Tool]:
        listed = {tool.name: tool for tool in link.tools}
        wanted = [
            tool
            for tool in listed.values()
            if (self.config.allow is None or tool.name in self.config.allow)
            and tool.name not in self.config.deny
        ]
        for missing in sorted(set(self.config.allow or ()) - set(listed)):
            self._once(f"allow names {missing!r}, which the server does not list")
        tools: list[Tool] = []
        taken: set[str] = set()
        for remote in wanted:
            name = declare.function_name(self.config.name, remote.name, taken)
            try:
                parameters = declare.parameters(remote.input_schema)
            except declare.Unsupported as exc:
                self._once(f"tool {remote.name} left out: {exc}")
                continue
            declaration: dict[str, Any] = {
                "name": name,
                "description": _description(remote, self.config.name),
                "behavior": "NON_BLOCKING",
            }
            if parameters is not None:
                declaration["parameters"] = parameters
            problem = declare.declaration_ok(declaration)
            if problem is not None:
                self._once(f"tool {remote.name} left out: the SDK refuses it ({problem})")
                continue
            taken.add(name)
            tools.append(Tool(declaration, self._handler(link, remote.name), SCHEDULING))
        return tools

    def _handler(
        self, link: Link, remote: str
    ) -> Callable[[ToolContext, dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def handle(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
            return await self._call(link, remote, args)

        return handle

    async def _call(self, link: Link, remote: str, args: dict[str, Any]) -> dict[str, Any]:
        timeout = self.config.timeout_s
        if not self.persistent and link is not self._link:
            return {"error": "the conversation this call belongs to has ended"}
        try:
            outcome = await link.call(remote, args, timeout)
        except TimeoutError:
            self._failing(f"no answer within {timeout:g} s")
            return {"error": f"{self.config.name} did not answer within {timeout:g} seconds"}
        except ServerUnreachable as exc:
            self._failing(str(exc))
            return {"error": f"{self.config.name} cannot be reached now ({exc})"}
        if self._calls_failing:
            self._calls_failing = False
            log.info("%s answers calls again", self.name)
        return _answer(outcome)

    def _failing(self, reason: str) -> None:
        if not self._calls_failing:
            self._calls_failing = True
            log.warning(
                "%s: a call failed (%s); its tools answer with an error until it is back",
                self.name,
                reason,
            )

    def _once(self, complaint: str) -> None:
        if complaint not in self._said:
            self._said.add(complaint)
            log.warning("%s: %s", self.name, complaint)


def _preload() -> None:
    from appliance.tools.mcp.link import preload

    preload()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A background open's failure is reported by the conversation that waits for it
    (or by none): never as "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _description(remote: RemoteTool, server: str) -> str:
    text = remote.description.strip() or remote.name
    if len(text) > DESCRIPTION_MAX:
        text = text[: DESCRIPTION_MAX - 1] + "…"
    return f"{text} (via {server})"


def _answer(outcome: Outcome) -> dict[str, Any]:
    """The function response: `result`, or `error` for a tool that reports failure; a
    text that is JSON is passed as JSON, so the model reads fields, not escapes."""
    value: Any = outcome.text
    if outcome.text:
        try:
            value = json.loads(outcome.text)
        except ValueError:
            value = outcome.text
    elif outcome.structured is not None:
        value = outcome.structured
    if outcome.is_error:
        return {"error": value or "the tool failed"}
    return {"result": value}


def read_token(config: McpServerConfig, environ: dict[str, str] | None = None) -> str | None:
    """The server's bearer token from `token_file` or the systemd credential; registered
    with the log filter so it never reaches the journal. Raises ServerUnreachable (it is
    read as each conversation opens: a rotated token needs no restart)."""
    env = dict(os.environ) if environ is None else environ
    if config.token_file is not None:
        file = config.token_file
    elif config.token_credential is not None:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ServerUnreachable(
                f"token_credential {config.token_credential!r}: no $CREDENTIALS_DIRECTORY (add "
                f"LoadCredential={config.token_credential}:/path/to/token with "
                "`systemctl edit appliance`)"
            )
        file = Path(directory) / config.token_credential
    else:
        return None
    try:
        token = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServerUnreachable(f"cannot read the token in {file}: {exc.strerror}") from None
    if not token:
        raise ServerUnreachable(f"the token file {file} is empty")
    if any(c.isspace() for c in token):
        raise ServerUnreachable(f"the token in {file} has spaces in it (one token, one line)")
    from appliance.daemon import service

    try:
        service.SECRETS.register(token)
    except ValueError:
        raise ServerUnreachable(f"the token in {file} is too short to be a token") from None
    return token


async def real_link(config: McpServerConfig) -> Link:
    """A `link.McpLink` for the server (the `mcp` package's client)."""
    from appliance.tools.mcp.link import McpLink

    return McpLink(url=config.url, token=read_token(config), command=config.command)
