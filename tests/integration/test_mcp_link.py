"""The MCP connection (`link.McpLink`, the `mcp` package's client) against a real server
(tests/rig/mcp_home.py) in a process of its own: a refused token, a stdio server that
exits, and a source that starts it again for the next conversation. The whole daemon
with a server is in tests/integration/daemon/test_mcp_e2e.py."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.audio.fakes import eventually
from appliance.config import McpServerConfig
from appliance.tools.mcp.link import McpLink
from appliance.tools.mcp.source import McpSource, ServerUnreachable
from appliance.tools.toolbox import Toolbox
from tests.rig import mcp_home
from tests.rig.mcp_home import TOKEN, HomeServer

pytest.importorskip("mcp")

pytestmark = pytest.mark.timeout(60)

SCRIPT = str(Path(mcp_home.__file__))


@pytest.fixture
async def http_url(tmp_path: Path) -> AsyncIterator[str]:
    server = HomeServer(tmp_path)
    await server.start()
    try:
        yield server.url
    finally:
        server.kill()


async def test_a_refused_token_is_said_as_such(http_url: str) -> None:
    link = McpLink(url=http_url, token="not-the-token-0123456789")
    with pytest.raises(ServerUnreachable, match="401"):
        await link.open()
    await link.close()
    assert not link.alive
    good = McpLink(url=http_url, token=TOKEN)
    await good.open()
    assert "HassTurnOn" in [t.name for t in good.tools]
    await good.close()
    assert not good.alive


async def test_a_stdio_server_that_exits_is_started_again_for_the_next_conversation(
    tmp_path: Path,
) -> None:
    argv = (sys.executable, SCRIPT, "--calls", str(tmp_path / "calls"), "--stdio", "--exit-tool")
    source = McpSource(McpServerConfig(name="kitchen", command=argv))
    box = Toolbox([source], list_timeout_s=30)
    box.prepare()
    await eventually(lambda: source.ready, within_s=30)
    session = await box.open()
    answer = await session.run(None, "kitchen_ServerExit", {})  # type: ignore[arg-type]
    assert answer["error"].startswith("kitchen cannot be reached")
    assert not source.ready  # the link knows its server is gone
    await session.close()
    session = await box.open()  # a new process
    answer = await session.run(None, "kitchen_GetLiveContext", {})  # type: ignore[arg-type]
    assert str(mcp_home.SENSOR_C) in answer["result"]
    await box.close()
    assert not source.ready


async def test_a_server_that_never_answers_costs_the_listing_bound_and_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from appliance.tools.mcp.link import preload

    await asyncio.to_thread(preload)  # (the import is not what is being bounded here)
    accepted: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # takes the request, never answers

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = McpServerConfig(name="home", url=f"http://127.0.0.1:{port}/api/mcp", token_file=token)
    box = Toolbox([McpSource(config)], list_timeout_s=0.5)
    async with server:
        for _ in range(2):
            assert (await box.open()).declarations() == []
        await eventually(lambda: accepted != [], within_s=5)
        await asyncio.sleep(0.2)
        owners = [t for t in asyncio.all_tasks() if t.get_name() == "mcp-link"]
        assert owners == []  # every connection's owner left with its listing
        for writer in accepted:
            writer.close()
    slow = [m for m in caplog.messages if "unavailable (no answer in 0.5 s)" in m]
    assert len(slow) == 1
