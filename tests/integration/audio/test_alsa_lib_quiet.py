"""alsa-lib's own error lines stay off stderr while a missing device is retried.

Through the real stack in a process of its own (alsa-lib writes to file descriptor 2,
which only a child's stderr captures): `Capture` with the real `open_alsa` on a device
that does not exist, retried every few milliseconds, logging to stderr as the service
does (the journal is the service's stderr). What remains is our one line for the state
change. The same opens without the handler print alsa-lib's lines, so the count is not
zero by accident.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import asyncio, logging, sys
from appliance.audio import devices
from appliance.audio.capture import Capture
from appliance.config import AudioConfig

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
opens = 0

def counting(spec):
    global opens
    opens += 1
    return devices.open_alsa(spec)

async def main():
    cfg = AudioConfig(capture_device=sys.argv[1])
    capture = Capture(cfg, opener=counting, retry_s=(0.005, 0.01))
    await capture.start()
    while opens < 40:
        await asyncio.sleep(0.01)
    await capture.stop()
    print(opens)

asyncio.run(main())
"""

BARE = r"""
import sys, alsaaudio
for _ in range(5):
    try:
        alsaaudio.PCM(type=alsaaudio.PCM_CAPTURE, device=sys.argv[1])
    except alsaaudio.ALSAAudioError:
        pass
"""


def run(code: str, device: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, device], capture_output=True, text=True, timeout=60
    )


def test_retrying_a_missing_device_prints_one_line_not_alsa_libs() -> None:
    for device in ("nosuchdevice", "hw:CARD=NoSuchCard,DEV=0"):
        bare = run(BARE, device)
        assert bare.stderr.count("ALSA lib ") >= 5, bare.stderr  # alsa-lib speaks up unasked

        child = run(CHILD, device)
        assert child.returncode == 0, child.stderr
        opens = int(child.stdout)
        assert opens >= 40
        lines = child.stderr.splitlines()
        assert not [line for line in lines if "ALSA lib" in line], child.stderr
        ours = [line for line in lines if "is not available" in line]
        assert len(ours) == 1, child.stderr
        assert ours[0].startswith(f"ERROR capture device {device!r} is not available")
        assert "arecord -L" in ours[0]
        assert len(lines) == 1, child.stderr  # nothing else per retry either
