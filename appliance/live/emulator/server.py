"""The emulator's server: TLS WebSocket on loopback at the Live API's real URL path.

`Emulator` runs inside the caller's asyncio loop (`async with Emulator() as emu:`);
`ThreadedEmulator` runs one on its own loop in a thread for sync tests, other threads
and the `appliance emulator` command. Both expose `base_url`, `ca_file`, `api_key`,
`env()` and the recorder's views (`records`, `received_audio()`, `sent`).
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .recorder import Record, Recorder, Sent
from .scenario import Scenario
from .session import ConnectionInfo, Conversation, Hub, Session
from .tls import make_tls

log = logging.getLogger(__name__)

PATH_RE = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\."
    r"GenerativeService\.BidiGenerateContent(?:\?.*)?$"
)
DEFAULT_API_KEY = "emulator-key"
MAX_FRAME = 16 * 1024 * 1024
"""Well above websockets' 1 MiB default: a 768 px JPEG frame in base64 can exceed it."""


class Emulator:
    """A local Gemini Live API over TLS on 127.0.0.1, for the unmodified SDK."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        cert_dir: Path | str | None = None,
        recorder: Recorder | None = None,
        binary_frames: bool = True,
        max_size: int = MAX_FRAME,
    ) -> None:
        self.scenario = scenario or Scenario()
        self.host = host
        self.port = port
        self.api_key = api_key
        self.recorder = recorder or Recorder()
        self.binary_frames = binary_frames
        self.max_size = max_size
        self._cert_dir = Path(cert_dir) if cert_dir is not None else None
        self._tmp_dir: str | None = None
        self._server: Server | None = None
        self.hub = Hub(self.scenario, self.recorder, api_key)
        self.ca_file = Path()

    # ---- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._cert_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="live-emulator-")
            cert_dir = Path(self._tmp_dir)
        else:
            cert_dir = self._cert_dir
        tls = await asyncio.to_thread(make_tls, cert_dir)
        self.ca_file = tls.ca_file
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            ssl=tls.server_context,
            max_size=self.max_size,
            process_request=self._check_path,
            server_header="emulated-live-api",
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("Live API emulator on %s (CA %s)", self.base_url, self.ca_file)

    async def stop(self) -> None:
        for session in list(self.hub.frozen):  # hung on purpose: no close handshake
            session.abort()
        self.hub.frozen.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- what clients need ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for an unmodified SDK client: base URL, CA bundle and the key."""
        return {
            "GOOGLE_GEMINI_BASE_URL": self.base_url,
            "SSL_CERT_FILE": str(self.ca_file),
            "GEMINI_API_KEY": self.api_key,
        }

    # ---- inspection ----------------------------------------------------------------

    @property
    def records(self) -> list[Record]:
        return self.recorder.records

    @property
    def sent(self) -> list[Sent]:
        return self.recorder.sent

    def received_audio(self, conn: int | None = None) -> bytes:
        return self.recorder.received_audio(conn)

    @property
    def connections(self) -> list[ConnectionInfo]:
        return list(self.hub.connections)

    @property
    def conversations(self) -> list[Conversation]:
        return list(self.hub.conversations)

    def consumed_records(self, conversation: Conversation) -> list[Record]:
        """The client messages a conversation's state is made of, in order, across the
        connections it was resumed on (see `Hub.consumed_records`)."""
        return self.hub.consumed_records(conversation)

    # ---- serving -------------------------------------------------------------------

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if PATH_RE.match(request.path):
            return None
        log.info("rejecting unknown path %s", request.path.split("?")[0])
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")

    async def _handler(self, ws: ServerConnection) -> None:
        request = ws.request
        path = request.path if request is not None else ""
        match = PATH_RE.match(path)
        info = ConnectionInfo(
            id=len(self.hub.connections) + 1,
            path=path.split("?")[0],
            api_version=match.group(1) if match else "?",
        )
        self.hub.connections.append(info)
        await Session(self.hub, ws, info, self.binary_frames).run()


class ThreadedEmulator:
    """An `Emulator` on its own event loop in a daemon thread, for sync code."""

    def __init__(self, scenario: Scenario | None = None, **kwargs: Any) -> None:
        self.emulator = Emulator(scenario, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> None:
        started: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started))
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="live-emulator", daemon=True)
        self._thread.start()
        started.result(timeout)

    async def _serve(self, started: Future[None]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.emulator.start()
        except BaseException as exc:
            started.set_exception(exc)
            raise
        started.set_result(None)
        try:
            await self._stopped.wait()
        finally:
            await self.emulator.stop()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the emulator's loop (to change state safely) and return its result."""
        assert self._loop is not None
        done: Future[Any] = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(30)

    def __enter__(self) -> ThreadedEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # The same views as Emulator.
    @property
    def scenario(self) -> Scenario:
        return self.emulator.scenario

    @property
    def base_url(self) -> str:
        return self.emulator.base_url

    @property
    def ca_file(self) -> Path:
        return self.emulator.ca_file

    @property
    def api_key(self) -> str:
        return self.emulator.api_key

    @property
    def port(self) -> int:
        return self.emulator.port

    def env(self) -> dict[str, str]:
        return self.emulator.env()

    @property
    def records(self) -> list[Record]:
        return self.emulator.records

    @property
    def sent(self) -> list[Sent]:
        return self.emulator.sent

    def received_audio(self, conn: int | None = None) -> bytes:
        return self.emulator.received_audio(conn)

    @property
    def connections(self) -> list[ConnectionInfo]:
        return self.emulator.connections

    @property
    def conversations(self) -> list[Conversation]:
        return self.emulator.conversations
