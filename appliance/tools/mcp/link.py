"""A connection to one MCP server (a conversation's, or a stdio server's for as long as
it runs), through the `mcp` package.

The package's client keeps anyio task groups open for the life of a connection, and
those must be entered and left by one task. The toolbox lists tools in the task that
opens the Live session, and each call runs in a task of its own, so the connection gets
an owner: a task that enters the client, lists the tools, then waits to be told to close
(or for the transport to fail) and leaves the client itself. Calls go through the
client's session from their own tasks (a request is a message on a stream; any task may
send one), each raced against the owner: a server that dies takes the owner down with
its transport, and every call waiting on it ends at once instead of at its timeout.

`mcp` is imported here only: this module is loaded when servers are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from appliance.tools.mcp.source import Outcome, RemoteTool, ServerUnreachable

log = logging.getLogger(__name__)

# httpx2 logs every request at INFO: a journal line per MCP message otherwise (the
# journal says when a server is down or back, not each call). Debug stays quiet too, so
# no header (the token) can reach a log line at `[logging] level = "debug"`.
for _noisy in ("httpx2", "httpcore2"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

CLOSE_TIMEOUT_S = 2.0
"""How long a closing connection may take (a DELETE to the server, a stdio server's exit)
before its owner is cancelled."""
LIST_PAGES_MAX = 20


def preload() -> None:
    """Import the client library (in a thread, at start-up), not in the first
    conversation's listing, which has two seconds: the import alone takes one to four
    here and more on a Pi Zero 2 W (bench/results/mcp.md). The daemon imports the Live
    client in a thread of its own at the same time: import that first (waiting for the
    other thread if it is under way), so two threads never import the modules both
    share (pydantic, httpx2) in opposite orders."""
    import mcp.client.client
    import mcp.client.streamable_http  # noqa: F401

    import appliance.live.client  # noqa: F401


class McpLink:
    """A connection to one server for one conversation; see the module docstring."""

    def __init__(
        self,
        *,
        url: str | None = None,
        token: str | None = None,
        command: tuple[str, ...] | None = None,
    ) -> None:
        self._url, self._token, self._command = url, token, command
        self.tools: list[RemoteTool] = []
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._http_status: int | None = None
        """The last HTTP error status the server answered with."""
        self.failure: str | None = None
        """Why the connection ended by itself (the server went away)."""

    async def open(self) -> None:
        """Connect, initialise and list the tools; raises when the server cannot be
        reached. Cancelled (the toolbox's bound), it leaves nothing running."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._owner = asyncio.create_task(self._own(), name="mcp-link")
        try:
            await self._ready
        except BaseException:
            self._ready.cancel()  # (nobody waits for its outcome any more)
            self._owner.cancel()
            raise

    @property
    def alive(self) -> bool:
        owner = self._owner
        return (
            self._client is not None
            and owner is not None
            and not owner.done()
            and not self._stop.is_set()
        )

    async def relist(self) -> list[RemoteTool]:
        """List the tools again (a kept stdio server, as a conversation opens)."""
        from mcp.shared.exceptions import MCPError

        if not self.alive:
            raise ServerUnreachable(self.failure or "the connection is closed")
        try:
            return await _list_tools(self._client)
        except MCPError as exc:
            raise self._lost(exc) from None

    async def call(self, name: str, args: dict[str, Any], timeout_s: float) -> Outcome:
        """Run one tool call; raises TimeoutError, or ServerUnreachable when the
        connection is gone or goes while the call waits."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        owner = self._owner
        if self._client is None or owner is None or owner.done():
            raise ServerUnreachable(self.failure or "the connection is closed")
        request = asyncio.ensure_future(self._client.call_tool(name, args))
        try:
            done, _ = await asyncio.wait(
                {request, owner}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not request.done():
                request.cancel()
                with contextlib.suppress(BaseException):
                    await request
        if request not in done:
            if owner in done:
                raise ServerUnreachable(self.failure or "the connection was lost")
            raise TimeoutError
        try:
            result = request.result()
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise self._lost(exc) from None
            return Outcome(is_error=True, text=f"{exc.message} (MCP error {exc.code})")
        return _outcome(result)

    def _lost(self, exc: Exception) -> ServerUnreachable:
        """The server closed the connection (a stdio server that exited: its client
        stays entered): the owner leaves, so `alive` says so and a new link is made."""
        self.failure = self.failure or f"the server closed the connection ({exc})"
        self._stop.set()
        return ServerUnreachable(self.failure)

    async def close(self) -> None:
        """Leave the client (in its owner task), waiting at most CLOSE_TIMEOUT_S."""
        self._stop.set()
        owner, self._owner = self._owner, None
        if owner is None or owner.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(owner), CLOSE_TIMEOUT_S)
        if not owner.done():
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner

    async def _own(self) -> None:
        assert self._ready is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._make_client(stack))
                self.tools = await _list_tools(client)
                self._client = client
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # the owner's end is the connection's: record why
            reason = _reason(exc, self._http_status)
            if not self._ready.done():
                self._ready.set_exception(ServerUnreachable(reason))
            elif not self._stop.is_set():
                self.failure = reason
                log.debug("MCP connection ended: %s", reason)
            if isinstance(exc, asyncio.CancelledError) and self._stop.is_set():
                return
        finally:
            self._client = None

    def _make_client(self, stack: contextlib.AsyncExitStack) -> Any:
        from mcp import Client, StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        if self._command is not None:
            program, *args = self._command
            return Client(
                StdioServerParameters(command=program, args=args, cwd=str(Path.cwd())),
                cache=None,
            )
        assert self._url is not None
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        http = create_mcp_http_client(headers=headers)

        async def note_status(response: Any) -> None:
            # The client says only "Server returned an error response" for a 401.
            if response.status_code >= 400:
                self._http_status = response.status_code

        http.event_hooks = {"request": [], "response": [note_status]}
        stack.push_async_callback(http.aclose)
        return Client(streamable_http_client(self._url, http_client=http), cache=None)


async def _list_tools(client: Any) -> list[RemoteTool]:
    tools: list[RemoteTool] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES_MAX):
        page = await client.list_tools(cursor=cursor)
        tools += [
            RemoteTool(t.name, t.description or t.title or "", dict(t.input_schema or {}))
            for t in page.tools
        ]
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


TEXT_MAX = 4000
"""Characters of a result passed on: a whole home's state fits; a runaway answer does not
fill the model's context (and the bill)."""


def _outcome(result: Any) -> Outcome:
    texts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        else:
            texts.append(f"[{kind or 'content'} omitted]")
    text = "\n".join(texts)
    if len(text) > TEXT_MAX:
        text = text[:TEXT_MAX] + " [cut]"
    structured = None if texts else result.structured_content
    return Outcome(is_error=bool(result.is_error), text=text, structured=structured)


def _reason(exc: BaseException, http_status: int | None = None) -> str:
    """The first real error inside the client's exception groups, said briefly (never
    a header: the token is in the client's headers, not in these messages)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ServerUnreachable):
        return str(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None) or http_status
    if status in (401, 403):
        return f"HTTP {status}: the token was refused (a long-lived access token? still valid?)"
    if status == 404:
        return (
            "HTTP 404: no MCP server at this URL (Home Assistant: is the Model Context "
            "Protocol Server integration added? the URL ends in /api/mcp)"
        )
    if status is not None:
        return f"HTTP {status} ({type(exc).__name__}: {exc})"
    if isinstance(exc, asyncio.CancelledError):
        return "the connection was lost"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
