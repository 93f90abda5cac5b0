"""The Live emulator in a process of its own, for runs where sharing the daemon's
process would hide what is measured:
- a flood: in the daemon's loop (or a thread, under the same GIL) the emulator can only
  send as fast as the daemon reads, so a flood never outruns the client;
- the soak's memory: whatever the emulator keeps (records, sessions' snapshots, TLS
  buffers) would show as the daemon's RSS growth.

The child is started fresh (`spawn`: nothing of the JACK rig or the daemon's threads is
forked into it) and answers over a pipe: reads and writes of its scenario (what to arm
for the next connection), its connections' plain facts, and the media records it
received. Records are stamped with CLOCK_MONOTONIC, the same clock in both processes, so
the privacy check compares them with the daemon's state timeline as usual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from appliance.live.emulator import Fault, Reply, Scenario, ThreadedEmulator
from appliance.live.emulator.recorder import Record, Recorder


def flooding(faults: list[Fault]) -> Scenario:
    """Short replies, sent eight times faster than real time, after `faults`."""
    from tests.rig.emulator import tone

    reply = Reply(text="ok", pcm=tone(610, 300))
    return Scenario(
        think_ms=50, realtime_factor=8.0, use_espeak=False, default_reply=reply, faults=faults
    )


def _serve(pipe: Connection, scenario: Scenario, limit: int) -> None:
    """The child: an emulator, and a loop answering the parent's requests in order."""
    logging.basicConfig(level=logging.WARNING)
    recorder = Recorder(keep_raw=False, limit=limit)
    with ThreadedEmulator(scenario, recorder=recorder) as threaded:
        emu = threaded.emulator
        pipe.send((emu.base_url, str(emu.ca_file), emu.api_key))
        while True:
            try:
                request, *args = pipe.recv()
            except EOFError:
                return
            if request == "set":
                setattr(emu.scenario, args[0], args[1])
                pipe.send(None)
            elif request == "get":
                pipe.send(getattr(emu.scenario, args[0]))
            elif request == "connections":
                pipe.send([_facts(c) for c in emu.connections])
            elif request == "of":
                kinds, since_ns = args
                pipe.send([_light(r) for r in recorder.of(kinds, since_ns=since_ns)])
            elif request == "stop":
                pipe.send(None)
                return


def _facts(connection: Any) -> SimpleNamespace:
    """A connection's plain fields (counts, codes, times): what crosses the pipe."""
    plain = (int, float, str, bool, type(None))
    return SimpleNamespace(
        **{
            f.name: getattr(connection, f.name)
            for f in dataclasses.fields(connection)
            if isinstance(getattr(connection, f.name), plain)
        }
    )


def _light(record: Record) -> Record:
    """A record without its JSON (the privacy check needs when, what and how many bytes)."""
    return Record(record.t_ns, record.conn, record.kind, {}, record.data, record.mime_type)


class EmulatorProcess:
    """The parts of `Emulator` the soak and `running_appliance` use, served by a child."""

    def __init__(self, scenario: Scenario, *, records_kept: int) -> None:
        self._scenario = scenario
        self._limit = records_kept
        self._pipe: Connection | None = None
        self._proc: Any = None
        self.base_url = ""
        self.ca_file = Path()
        self.api_key = ""
        self.scenario = _RemoteScenario(self)
        self.recorder = _RemoteRecorder(self)

    def ask(self, *request: Any) -> Any:
        assert self._pipe is not None, "the emulator process is not running"
        self._pipe.send(request)
        return self._pipe.recv()

    @property
    def connections(self) -> list[SimpleNamespace]:
        """The connections so far, with their plain fields (`ConnectionInfo`'s turns,
        close code, flood counts; not its setup or conversation)."""
        connections: list[SimpleNamespace] = self.ask("connections")
        return connections

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def __enter__(self) -> EmulatorProcess:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._proc = context.Process(
            target=_serve, args=(child, self._scenario, self._limit), name="live-emulator"
        )
        self._proc.start()
        child.close()
        if not self._pipe.poll(60):
            self._proc.kill()
            raise RuntimeError("the emulator process did not start within 60 s")
        base_url, ca_file, self.api_key = self._pipe.recv()
        self.base_url, self.ca_file = base_url, Path(ca_file)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.ask("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


class _RemoteScenario:
    """Attribute reads and writes go to the child's scenario."""

    def __init__(self, owner: EmulatorProcess) -> None:
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name: str) -> Any:
        return self._owner.ask("get", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._owner.ask("set", name, value)


class _RemoteRecorder:
    def __init__(self, owner: EmulatorProcess) -> None:
        self._owner = owner

    def of(self, kinds: Any, conn: int | None = None, *, since_ns: int = 0) -> list[Record]:
        records: list[Record] = self._owner.ask("of", kinds, since_ns)
        return [r for r in records if conn is None or r.conn == conn]
