"""A stand-in for `link.McpLink` in unit tests: scripted tools and answers, a server that
is down, slow or dies, and a record of the calls it got."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.tools.mcp.source import Outcome, RemoteTool, ServerUnreachable


@dataclass
class FakeServer:
    """What the fake links of one server share (a test scripts it between sessions)."""

    tools: list[RemoteTool] = field(default_factory=list)
    answer: Callable[[str, dict[str, Any]], Outcome] = lambda name, args: Outcome(False, "ok")
    down: bool = False
    """Opening a link fails (connection refused)."""
    open_delay_s: float = 0.0
    call_delay_s: float = 0.0
    dead: bool = False
    """Calls fail as on a lost connection."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    links: list[FakeLink] = field(default_factory=list)

    async def make_link(self, config: Any) -> FakeLink:
        link = FakeLink(self)
        self.links.append(link)
        return link

    def exit(self) -> None:
        """The server process exits: every open connection to it is lost."""
        for link in self.links:
            link.is_open = False


class FakeLink:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.tools: list[RemoteTool] = []
        self.is_open = False

    async def open(self) -> None:
        await asyncio.sleep(self.server.open_delay_s)
        if self.server.down:
            raise ServerUnreachable("ConnectError: All connection attempts failed")
        self.tools = list(self.server.tools)
        self.is_open = True
        self.server.opened += 1

    @property
    def alive(self) -> bool:
        return self.is_open and not self.server.dead

    async def relist(self) -> list[RemoteTool]:
        if not self.alive:
            raise ServerUnreachable("the connection was lost")
        return list(self.server.tools)

    async def call(self, name: str, args: dict[str, Any], timeout_s: float) -> Outcome:
        if not self.is_open or self.server.dead:
            raise ServerUnreachable("the connection was lost")
        self.server.calls.append((name, args))
        async with asyncio.timeout(timeout_s):
            await asyncio.sleep(self.server.call_delay_s)
        return self.server.answer(name, args)

    async def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self.server.closed += 1
