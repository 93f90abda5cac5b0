"""The clock is synchronised: TLS certificates and the Live API need the right time.

Checked with the kernel's own flag (adjtimex(2) with no change asked, as timedatectl's
"System clock synchronized" is): systemd-timesyncd, chrony and ntpd clear it once they
have set the clock. No D-Bus or root needed, so it also works in a container or chroot.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

from appliance.doctor.result import Result, failed, passed, skipped

TIME_ERROR = 5
"""adjtimex's answer while the clock is not synchronised (STA_UNSYNC)."""
FIX = (
    "turn time sync on: `sudo timedatectl set-ntp true` (systemd-timesyncd; "
    "`timedatectl timesync-status` shows the server), and let it reach an NTP server"
)


def kernel_clock_state() -> int:
    """adjtimex(2) with `modes = 0` (read only); raises OSError."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    timex = ctypes.create_string_buffer(512)  # larger than struct timex on any ABI; zeroed
    state = int(libc.adjtimex(timex))
    if state < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"adjtimex failed (errno {errno})")
    return state


def check_clock(state: Callable[[], int] = kernel_clock_state) -> Result:
    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        value = state()
    except OSError as exc:
        return skipped("clock", f"cannot ask the kernel (adjtimex: {exc})")
    if value == TIME_ERROR:
        return failed(
            "clock", f"not synchronised (kernel clock status via adjtimex; it says {now})", FIX
        )
    return passed("clock", f"synchronised (kernel clock status via adjtimex; {now})")
