"""The tools of one conversation, gathered from every source as it opens.

Sources are asked together and each gets `list_timeout_s`: a server that is down or
slow costs the conversation its tools, not its start. The journal says so once when a
source goes away and once when it is back, not at every session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from appliance.tools.base import Tool, ToolContext, ToolSource

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 2.0


class SessionTools:
    """The tools declared to one session, by name."""

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        releases: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.by_name: dict[str, Tool] = dict(tools or {})
        self._releases = list(releases)

    async def close(self) -> None:
        """The conversation ended: sources let go of what they opened for it (an MCP
        server's connection). Never raises; bounded by each source."""
        releases, self._releases = self._releases, []
        results = await asyncio.gather(*(release() for release in releases), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a tool source failed: %s", result)

    def declarations(self) -> list[dict[str, Any]]:
        return [tool.declaration for tool in self.by_name.values()]

    def scheduling_of(self, name: str) -> str | None:
        """How the answer to a call of `name` is scheduled (None: BLOCKING, or unknown)."""
        tool = self.by_name.get(name)
        return tool.scheduling if tool is not None else None

    async def run(self, ctx: ToolContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run one call; errors become an `error` answer the model can speak about. A call
        of a function this session did not declare (e.g. `look` with the camera in stream
        mode) is refused, not run."""
        tool = self.by_name.get(name)
        if tool is None:
            return {"error": f"unknown function {name!r}"}
        try:
            return await tool.handler(ctx, args)
        except Exception as exc:  # a broken tool must not end the conversation
            log.exception("tool %s failed", name)
            return {"error": f"{type(exc).__name__}: {exc}"}


class Toolbox:
    """Every tool source the appliance has; `open()` lists them for a new session."""

    def __init__(
        self, sources: Sequence[ToolSource], list_timeout_s: float = LIST_TIMEOUT_S
    ) -> None:
        self.sources = list(sources)
        self.list_timeout_s = list_timeout_s
        self._down: set[str] = set()

    def prepare(self) -> None:
        """At service start: sources that start something slow (a stdio MCP server)
        begin now, in the background."""
        for source in self.sources:
            prepare = getattr(source, "prepare", None)
            if prepare is not None:
                prepare()

    async def close(self) -> None:
        """The service stops, or the toolbox is replaced: sources close what they keep."""
        closes = [c for c in (getattr(s, "close", None) for s in self.sources) if c]
        results = await asyncio.gather(*(close() for close in closes), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a tool source failed: %s", result)

    async def open(self) -> SessionTools:
        results = await asyncio.gather(
            *(self._list(source) for source in self.sources), return_exceptions=False
        )
        tools: dict[str, Tool] = {}
        for source, listed in zip(self.sources, results, strict=True):
            for tool in listed:
                name = str(tool.declaration["name"])
                if name in tools:
                    log.warning(
                        "tool %s from %s: the name is taken; not declared", name, source.name
                    )
                    continue
                tools[name] = tool
        releases = [r for r in (getattr(s, "release", None) for s in self.sources) if r]
        return SessionTools(tools, releases)

    async def _list(self, source: ToolSource) -> list[Tool]:
        try:
            async with asyncio.timeout(self.list_timeout_s):
                listed = await source.tools()
        except Exception as exc:  # down, slow or broken: this session goes on without it
            if source.name not in self._down:
                self._down.add(source.name)
                reason = (
                    f"no answer in {self.list_timeout_s:.1f} s"
                    if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc}"
                )
                log.warning(
                    "tools of %s unavailable (%s); conversations go on without them",
                    source.name,
                    reason,
                )
            return []
        if source.name in self._down:
            self._down.discard(source.name)
            log.info("tools of %s are back (%d)", source.name, len(listed))
        return listed
