"""The toolbox gathers each session's tools; a source that is down or slow costs its
tools, not the conversation, and the journal says so once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from appliance.tools.base import Tool, ToolContext
from appliance.tools.builtin import BuiltinTools
from appliance.tools.toolbox import Toolbox


async def _echo(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return {"args": args}


async def _broken(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("boom")


class Source:
    def __init__(self, name: str, tools: list[Tool], fail: bool = False, delay: float = 0):
        self.name, self._tools, self.fail, self.delay = name, tools, fail, delay

    async def tools(self) -> list[Tool]:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionRefusedError("connection refused")
        return self._tools


def tool(name: str, handler: Any = _echo, scheduling: str | None = None) -> Tool:
    return Tool({"name": name, "description": name}, handler, scheduling)


async def test_sources_are_merged_and_calls_run() -> None:
    box = Toolbox([BuiltinTools(False), Source("home", [tool("lights", scheduling="SILENT")])])
    session = await box.open()
    names = [d["name"] for d in session.declarations()]
    assert "lights" in names and "get_volume" in names and "look" not in names
    assert session.scheduling_of("lights") == "SILENT"
    assert await session.run(None, "lights", {"on": True}) == {"args": {"on": True}}  # type: ignore[arg-type]
    assert await session.run(None, "look", {}) == {"error": "unknown function 'look'"}  # type: ignore[arg-type]


async def test_a_failing_handler_becomes_an_error_answer() -> None:
    session = await Toolbox([Source("x", [tool("bad", _broken)])]).open()
    assert await session.run(None, "bad", {}) == {"error": "RuntimeError: boom"}  # type: ignore[arg-type]


async def test_a_taken_name_is_not_declared_twice() -> None:
    box = Toolbox([Source("a", [tool("same")]), Source("b", [tool("same"), tool("other")])])
    session = await box.open()
    assert [d["name"] for d in session.declarations()] == ["same", "other"]


async def test_down_and_slow_sources_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    down = Source("down", [tool("a")], fail=True)
    slow = Source("slow", [tool("b")], delay=5)
    box = Toolbox([down, slow, Source("ok", [tool("c")])], list_timeout_s=0.1)
    with caplog.at_level(logging.INFO, logger="appliance.tools.toolbox"):
        for _ in range(3):
            session = await box.open()
            assert [d["name"] for d in session.declarations()] == ["c"]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert "connection refused" in warnings[0] and "no answer in 0.1 s" in warnings[1]
        down.fail, slow.delay = False, 0
        session = await box.open()
        assert [d["name"] for d in session.declarations()] == ["a", "b", "c"]
        assert sum("are back" in r.getMessage() for r in caplog.records) == 2
