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
  if the child does not finish within a bound it is killed and the device counts as
  still hung: the caller retries later, and the daemon stays responsive meanwhile;
- once the device answered, the parked handles are closed (`reclaim`): a `hw:` device
  that stalled would otherwise stay busy for good, held by its own old handle.

The child costs a Python start (about 0.1 s here, more on a Pi Zero), only after a stall.
A server that hangs again between the child's check and our open still blocks us: the
window is one open long.
"""

from __future__ import annotations

import ctypes
import json
import logging
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

ANSWER_WITHIN_S = 3.0
"""How long the child may take to open and close the device before it counts as hung."""

_PROBE = """
import json, sys
import alsaaudio
spec = json.loads(sys.argv[1])
kind = alsaaudio.PCM_CAPTURE if spec["direction"] == "capture" else alsaaudio.PCM_PLAYBACK
try:
    alsaaudio.PCM(type=kind, mode=alsaaudio.PCM_NONBLOCK, device=spec["device"]).close()
except alsaaudio.ALSAAudioError as exc:
    print(exc)
"""
"""Opens and closes in non-blocking mode: a busy device answers "busy" at once, which is
an answer (the server is not hung), not a reason to wait."""

_parked: dict[str, list[Any]] = {}
_lock = threading.Lock()


def park(pcm: Any, device: str) -> None:
    """Keep a stalled handle open and out of reach of the collector until `reclaim`.

    The extra reference (`Py_IncRef`) also keeps it from being closed at the
    interpreter's exit: the jack plugin crashed finalisation closing a handle of a dead
    server.
    """
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(pcm))
    with _lock:
        _parked.setdefault(device, []).append(pcm)
    log.warning("the stalled device's handle is left open until the device answers again")


def parked(device: str) -> int:
    """How many stalled handles of `device` are held."""
    with _lock:
        return len(_parked.get(device, ()))


def answers(device: str, direction: str, within_s: float = ANSWER_WITHIN_S) -> bool:
    """Whether `device` can be opened and closed by a child process within `within_s`.

    An ALSA error (missing, busy) is an answer too: the caller's own open reports it.
    """
    spec = json.dumps({"device": device, "direction": direction})
    try:
        subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, spec],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=within_s,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() killed and reaped it
        return False
    return True


def reclaim(device: str) -> None:
    """Close the parked handles of a device that answers again."""
    with _lock:
        handles = _parked.pop(device, [])
    for pcm in handles:
        try:
            pcm.close()
        except Exception as exc:  # it is gone either way
            log.debug("closing a stalled handle of %r: %s", device, exc)
        ctypes.pythonapi.Py_DecRef(ctypes.py_object(pcm))
    if handles:
        log.info("device %r answers again: %d stalled handle(s) closed", device, len(handles))
