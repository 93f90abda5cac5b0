"""A real MCP server shaped like Home Assistant's (its Assist tools), for tests.

Built with the `mcp` package's own server framework (`MCPServer`, mcp 2's FastMCP). It
serves a kitchen light (`HassTurnOn` / `HassTurnOff`, the argument names Home Assistant
uses) and a temperature sensor read through `GetLiveContext`, over Streamable HTTP on
127.0.0.1 with a bearer token (as Home Assistant's `/api/mcp` wants a long-lived access
token) or over stdio. Every call is appended to a JSON-lines file, so a test sees what the
server saw. `--hang TOOL` makes that tool never answer (a call the server dies during);
`--exit-tool` adds `ServerExit`, which ends the process (a stdio server that dies).

    python -m tests.rig.mcp_home --calls calls.jsonl --port 8123 --token T
    python -m tests.rig.mcp_home --calls calls.jsonl --stdio

Run as its own process, so a test can kill it mid-call: `HomeServer` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

TOKEN = "test-long-lived-access-token-0123456789"
"""The token tests give the HTTP server (and the appliance, in a token file)."""
LIGHT = "light.kitchen"
SENSOR_C = 21.5

# Module level: the framework reads the tools' annotations (postponed, as strings) here.
Name = Annotated[str | None, Field(description="Name of the device or entity")]
Area = Annotated[str | None, Field(description="Name of the area")]
Domain = Annotated[list[str] | None, Field(description="Domains, e.g. light, switch")]


def build(calls: Path, hang: set[str], exit_tool: bool = False) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("Home Assistant", instructions="Control the home (test double).")
    lights = {LIGHT: "off"}

    async def record(tool: str, args: dict[str, Any]) -> None:
        with calls.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "args": args}) + "\n")
        if tool in hang:
            await asyncio.Event().wait()

    def intent_result(name: str) -> str:
        # Home Assistant answers an intent with its IntentResponse as JSON text.
        return json.dumps(
            {
                "speech": {},
                "response_type": "action_done",
                "data": {
                    "targets": [],
                    "success": [{"name": name, "type": "entity", "id": LIGHT}],
                    "failed": [],
                },
            }
        )

    @server.tool(name="HassTurnOn", description="Turns on/opens a device or entity")
    async def turn_on(name: Name = None, area: Area = None, domain: Domain = None) -> str:
        await record("HassTurnOn", {"name": name, "area": area, "domain": domain})
        lights[LIGHT] = "on"
        return intent_result(name or "Kitchen Light")

    @server.tool(name="HassTurnOff", description="Turns off/closes a device or entity")
    async def turn_off(name: Name = None, area: Area = None, domain: Domain = None) -> str:
        await record("HassTurnOff", {"name": name, "area": area, "domain": domain})
        lights[LIGHT] = "off"
        return intent_result(name or "Kitchen Light")

    @server.tool(
        name="GetLiveContext",
        description="Provides real-time information about the CURRENT state of the home",
    )
    async def live_context() -> str:
        await record("GetLiveContext", {})
        return (
            "Live Context: An overview of the areas and the devices in this smart home:\n"
            f"- names: Kitchen Light\n  domain: light\n  state: '{lights[LIGHT]}'\n"
            "  areas: Kitchen\n"
            "- names: Kitchen Temperature\n  domain: sensor\n"
            f"  state: '{SENSOR_C}'\n  attributes:\n    unit_of_measurement: °C\n"
            "  areas: Kitchen\n"
        )

    @server.tool(name="HassBroken", description="Always fails (as an unavailable device does)")
    async def broken(name: Name = None) -> str:
        await record("HassBroken", {"name": name})
        raise ValueError(f"device {name!r} is unavailable")

    if exit_tool:

        @server.tool(name="ServerExit", description="Ends the server process (tests)")
        async def server_exit() -> str:
            await record("ServerExit", {})
            os._exit(1)

    return server


def http_app(server: Any, token: str | None) -> Any:
    """The Streamable HTTP app at /api/mcp, behind a bearer-token check like HA's."""
    app = server.streamable_http_app(streamable_http_path="/api/mcp")

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and token is not None:
            headers = dict(scope.get("headers") or ())
            if headers.get(b"authorization") != f"Bearer {token}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"401: Unauthorized"})
                return
        await app(scope, receive, send)

    return guarded


class HomeServer:
    """The MCP server process and the calls it saw."""

    def __init__(self, tmp: Path, *, hang: tuple[str, ...] = ()) -> None:
        self.calls_file = tmp / "calls.jsonl"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/mcp"
        self.hang = hang
        self.process: subprocess.Popen[bytes] | None = None

    def argv(self, *extra: str) -> list[str]:
        hangs = [arg for tool in self.hang for arg in ("--hang", tool)]
        return [sys.executable, __file__, "--calls", str(self.calls_file), *hangs, *extra]

    def spawn(self) -> None:
        self.process = subprocess.Popen(self.argv("--port", str(self.port), "--token", TOKEN))

    async def start(self) -> None:
        self.spawn()
        assert self.process is not None
        async with asyncio.timeout(20):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    assert self.process.poll() is None, "the MCP server did not start"
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                return

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=Path, required=True, help="JSON lines of each call")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", help="the bearer token HTTP requests must carry")
    parser.add_argument("--stdio", action="store_true", help="serve on stdin/stdout")
    parser.add_argument("--hang", action="append", default=[], help="a tool that never answers")
    parser.add_argument("--exit-tool", action="store_true", help="a tool that ends the server")
    args = parser.parse_args()
    server = build(args.calls, set(args.hang), args.exit_tool)
    if args.stdio:
        server.run("stdio")
        return
    import uvicorn

    uvicorn.run(http_app(server, args.token), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
