"""Keep alsa-lib's own error lines off stderr (and so out of the journal).

alsa-lib prints every failure it meets to stderr ("ALSA lib pcm.c:2666:
(snd_pcm_open_noupdate) Unknown PCM ...", often several per open) before pyalsaaudio
raises. With a device missing, the capture and playback threads retry with a backoff, and
each retry added those lines: 168 of them in 62 s on a Pi. The appliance already says
what happened, once per state change, in words with a fix (`devices.AudioDeviceError`).

alsa-lib's documented way to redirect them is `snd_lib_error_set_handler()`; ours drops
them (at debug level their location and format string are logged, without the values,
since a C variadic call cannot be formatted from here). The handler is process-wide and
set once, before the first PCM is opened. If libasound cannot be loaded, nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_HANDLER_TYPE = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
)
"""`snd_lib_error_handler_t`: (file, line, function, err, fmt, ...); the variadic rest is
ignored, which the C calling conventions of our platforms allow for the callee."""

_lock = threading.Lock()
_installed: Any = None
"""The ctypes callback: kept referenced for as long as alsa-lib may call it (forever)."""


def _drop(
    file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None
) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "alsa-lib %s:%d (%s): %s",
            (file or b"?").decode(errors="replace"),
            line,
            (function or b"?").decode(errors="replace"),
            (fmt or b"").decode(errors="replace").strip(),
        )


def silence_alsa_lib() -> bool:
    """Install the handler once; True when alsa-lib's messages are now dropped."""
    global _installed
    with _lock:
        if _installed is not None:
            return True
        try:
            lib = ctypes.CDLL("libasound.so.2")
            setter = lib.snd_lib_error_set_handler
        except (OSError, AttributeError) as exc:
            log.debug("alsa-lib's error output stays on: %s", exc)
            return False
        handler = _HANDLER_TYPE(_drop)
        setter.argtypes = [_HANDLER_TYPE]
        setter.restype = ctypes.c_int
        if setter(handler) != 0:
            return False
        _installed = handler
        return True
