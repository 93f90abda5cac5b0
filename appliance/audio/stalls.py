"""Keeping a device that stopped answering away from the process's global lock.

pyalsaaudio opens, drops and closes a PCM while holding Python's global lock. A device
behind a socket (the jack or pulse plugin, a Bluetooth bridge) whose server hangs blocks
in those calls, and then every thread of the process waits, the event loop included: no
`status`, no watchdog ping, no turn bound (found by the soak: a stopped JACK server froze
the daemon in `pcm.close()`, and once that was avoided, in reopening the device).

So after a stall nothing in this process touches the device until it has shown it
answers again:
- the stalled handle is parked, not closed (`park`);
- before the device is opened again, a child process opens and closes it (`answers`);
  if the child does not finish within a bound of being ready (Python started: a slow
  start is not a hung device) it is killed and the device counts as still hung: the
  caller retries later, and the daemon stays responsive meanwhile;
- once the device answered, the parked handles are closed (`reclaim`) only if the open
  says the device is busy: a `hw:` device that stalled would otherwise stay busy for
  good, held by its own old handle. A sound server's device opens beside them, and they
  stay parked for good (a few KiB each): closing a handle of a JACK server that died
  segfaults in libjack, even once a new server runs (the jack rig's
  server-going-away test).

The child costs a Python start (0.06 s here for `python -I -c "import alsaaudio"`, more on
a Pi Zero), only after a stall.
A server that hangs again between the child's check and our open still blocks us: the
window is one open long.
"""

from __future__ import annotations

import ctypes
import json
import logging
import select
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

ANSWER_WITHIN_S = 3.0
"""How long the child may take to open and close the device before it counts as hung."""
START_WITHIN_S = 20.0
"""How long the child may take to start Python and import alsaaudio, before it touches the
device: a Pi Zero 2 W under load with a cold SD card takes seconds, and a slow start
counted against `ANSWER_WITHIN_S` would keep a healthy device closed for good."""
PROBE_BOUND_S = START_WITHIN_S + ANSWER_WITHIN_S
"""The longest `answers` takes: a thread waiting in it is not hung."""

_PROBE = """
import json, sys
import alsaaudio
spec = json.loads(sys.argv[1])
kind = alsaaudio.PCM_CAPTURE if spec["direction"] == "capture" else alsaaudio.PCM_PLAYBACK
sys.stdout.write("ready\\n")
sys.stdout.flush()
try:
    alsaaudio.PCM(type=kind, mode=alsaaudio.PCM_NONBLOCK, device=spec["device"]).close()
except alsaaudio.ALSAAudioError:
    pass
"""
"""Says "ready" once Python started and alsaaudio is imported (nothing has touched the
device yet), then opens and closes in non-blocking mode: a busy device answers "busy" at
once, which is an answer (the server is not hung), not a reason to wait."""

_parked: dict[tuple[str, str], list[Any]] = {}
"""Parked handles by (device, direction): "default" names both the microphone and the
speaker, and one answering says nothing of the other (a hung Bluetooth speaker)."""
_lock = threading.Lock()
_said: set[str] = set()
"""What `answers` warned of already (once per process: it runs at every retry)."""


def _warn_once(message: str, *args: object) -> None:
    if message not in _said:
        _said.add(message)
        log.warning(message, *args)


def park(pcm: Any, device: str, direction: str) -> None:
    """Keep a stalled handle open and out of reach of the collector until `reclaim`.

    The extra reference (`Py_IncRef`) also keeps it from being closed at the
    interpreter's exit: the jack plugin crashed finalisation closing a handle of a dead
    server.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(pcm))
    with _lock:
        _parked.setdefault((device, direction), []).append(pcm)
    log.warning("the stalled device's handle is left open (closing it could hang the daemon)")


def parked(device: str, direction: str | None = None) -> int:
    """How many stalled handles of `device` (in `direction`, or either) are held."""
    with _lock:
        return sum(
            len(h) for (d, way), h in _parked.items() if d == device and direction in (None, way)
        )


def answers(
    device: str,
    direction: str,
    within_s: float = ANSWER_WITHIN_S,
    start_within_s: float = START_WITHIN_S,
) -> bool:
    """Whether `device` can be opened and closed by a child process within `within_s` of
    the child being ready (Python started: `start_within_s` at most).

    An ALSA error (missing, busy) is an answer too: the caller's own open reports it. So
    is a child that ends before it is ready (it could not import alsaaudio): the probe
    cannot tell, and the caller opens as it would without one.
    """
    spec = json.dumps({"device": device, "direction": direction})
    with subprocess.Popen(
        [sys.executable, "-I", "-c", _PROBE, spec],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as child:
        assert child.stdout is not None
        try:
            started, _, _ = select.select([child.stdout], [], [], start_within_s)
            if not started:
                _warn_once("the device check did not start within %g s", start_within_s)
                return False
            if not child.stdout.readline():  # it ended before it was ready
                _warn_once("the device check could not run (is alsaaudio importable?)")
                return True
            child.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            return False
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    return True


def reclaim(device: str, direction: str) -> None:
    """Close the parked handles of a device that answers again in `direction`."""
    with _lock:
        handles = _parked.pop((device, direction), [])
    for pcm in handles:
        try:
            pcm.close()
        except Exception as exc:  # it is gone either way
            log.debug("closing a stalled handle of %r: %s", device, exc)
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(pcm))
    if handles:
        log.info("device %r answers again: %d stalled handle(s) closed", device, len(handles))
