"""What MCP servers cost the appliance (not a test: it reports numbers).

    .venv/bin/python bench/mcp_cost.py [--trials 20] [--imports 5]

1. Start-up: the `mcp` client library, imported by `link.preload()` when servers are
   configured, in a fresh interpreter that has already imported the daemon and its Live
   client (`appliance.daemon.app`, `appliance.live.client` with google-genai): added wall
   time and resident memory (VmRSS), median of `--imports` interpreters.
2. Each conversation's start: `McpSource.tools()` (connect, initialise, list, declare)
   then `release()`, against tests/rig/mcp_home.py (the Home-Assistant-shaped server of
   the tests, MCPServer over Streamable HTTP with a bearer token on 127.0.0.1, its own
   process); and on a stdio server kept running (`relist` only). The toolbox waits for
   this before the Live session connects (bound: 2 s).
3. A call: `home_HassTurnOn` through the source's handler (the daemon's path), on one
   conversation's connection.

Medians and 90th percentiles over `--trials`. Numbers are this machine's (a shared
2-core VM), not a Pi's; compare them with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKEN = "bench-long-lived-access-token-0123456789"

IMPORT_PROBE = """
import json, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import appliance.daemon.app
import appliance.live.client  # the daemon imports it after READY=1 anyway
t0, m0 = time.perf_counter(), rss()
from appliance.tools.mcp.link import preload
preload()
print(json.dumps({"s": time.perf_counter() - t0, "mb": rss() - m0, "base_mb": m0}))
"""


def imports(n: int) -> dict[str, float]:
    runs = []
    for _ in range(n):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout))
    return {k: statistics.median(r[k] for r in runs) for k in ("s", "mb", "base_mb")}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return


def spawn(script: Path, calls: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(script), "--calls", str(calls), "--port", str(port)]
    return subprocess.Popen([*argv, "--token", TOKEN], stdout=subprocess.DEVNULL)


async def conversations(trials: int, tmp: Path) -> dict[str, list[float]]:
    from appliance.config import McpServerConfig
    from appliance.tools.mcp.link import preload
    from appliance.tools.mcp.source import McpSource

    preload()
    script = REPO / "tests" / "rig" / "mcp_home.py"
    calls = tmp / "calls.jsonl"
    port = free_port()
    server = spawn(script, calls, port)
    token = tmp / "token"
    token.write_text(TOKEN)
    out: dict[str, list[float]] = {"http_list": [], "http_call": [], "stdio_list": []}
    try:
        await wait_port(port)
        http = McpSource(
            McpServerConfig(name="home", url=f"http://127.0.0.1:{port}/api/mcp", token_file=token)
        )
        await http.tools()  # a first connection warms both ends
        await http.release()
        for _ in range(trials):
            t0 = time.perf_counter()
            tools = await http.tools()
            out["http_list"].append(time.perf_counter() - t0)
            (turn_on,) = [t for t in tools if t.declaration["name"] == "home_HassTurnOn"]
            t0 = time.perf_counter()
            answer = await turn_on.handler(None, {"name": "Kitchen Light"})  # type: ignore[arg-type]
            out["http_call"].append(time.perf_counter() - t0)
            assert "result" in answer, answer
            await http.release()
        stdio = McpSource(
            McpServerConfig(
                name="kitchen",
                command=(sys.executable, str(script), "--calls", str(calls), "--stdio"),
            )
        )
        t0 = time.perf_counter()
        stdio.prepare()
        await stdio.tools()
        out["stdio_start"] = [time.perf_counter() - t0]
        for _ in range(trials):
            t0 = time.perf_counter()
            await stdio.tools()
            out["stdio_list"].append(time.perf_counter() - t0)
            await stdio.release()
        await stdio.close()
    finally:
        server.kill()
        server.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--imports", type=int, default=5)
    args = parser.parse_args()
    imp = imports(args.imports)
    print(
        f"import mcp client after the daemon: {imp['s'] * 1000:.0f} ms, "
        f"+{imp['mb']:.1f} MB RSS (the daemon with its Live client: {imp['base_mb']:.1f} MB); "
        f"median of {args.imports}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        times: dict[str, Any] = asyncio.run(conversations(args.trials, Path(tmp)))
    labels = {
        "http_list": "conversation start, Streamable HTTP (connect, initialise, list)",
        "http_call": "call HassTurnOn, Streamable HTTP",
        "stdio_start": "stdio server start (spawn, initialise, list), once",
        "stdio_list": "conversation start, stdio server kept (list)",
    }
    for key, label in labels.items():
        values = times[key]
        print(
            f"{label}: median {statistics.median(values) * 1000:.1f} ms, "
            f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)})"
        )


if __name__ == "__main__":
    main()
