"""A microphone paced in real time for alsa-lib's `file` plugin: a FIFO fed 20 ms at a time.

The `file` capture plugin over `null` is unpaced: `null` hands out a period at once, and
the plugin then reads the period's bytes from its `infile`. With a regular file that
means a capture thread spinning a whole core (the file's end only yields more silence
from `null`, as fast as it can be read). With a FIFO as the `infile`, the plugin's
blocking `read()` waits for the feeder, so capture runs at exactly the pace this script
writes: 16 kHz mono S16_LE, 640 bytes every 20 ms, on an absolute schedule.

The feeder opens the FIFO read-write: alsa-lib's blocking open of the `infile` then
never waits for a writer, and a reader that closes and reopens (a service restart)
never sees end-of-file. While nobody reads, the pipe fills (64 KiB, 2 s) and further
silence is dropped.

SIGUSR1 plays `SPEECH` (raw 16 kHz mono S16_LE, written by the test) once, in place of
silence, with none of it dropped; then silence again. Standard library only: it runs
under the container's /usr/bin/python3, e.g. as a transient unit:

    systemd-run --unit=rig-mic python3 fifo_mic.py /srv/rig/mic.fifo /srv/rig/speech.raw
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

RATE = 16_000
PERIOD_S = 0.02
CHUNK = int(RATE * PERIOD_S) * 2
"""Bytes per 20 ms; below PIPE_BUF, so each write is all or nothing."""
MAX_LAG_S = 0.2
"""Behind schedule by more than this (a stalled machine): catch up from now, no burst."""


def chunks(data: bytes) -> list[bytes]:
    """Whole 20 ms chunks; a short last one is padded with silence."""
    data += bytes(-len(data) % CHUNK)
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def main(fifo: str, speech: str) -> int:
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    wanted = []

    def say(signum: int, frame: object) -> None:
        wanted.append(True)

    signal.signal(signal.SIGUSR1, say)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    silence = bytes(CHUNK)
    queue: list[bytes] = []
    due = time.monotonic()
    while True:
        if wanted:
            wanted.clear()
            with open(speech, "rb") as f:
                queue = chunks(f.read())
            print(f"speaking {len(queue) * PERIOD_S:.2f} s", flush=True)
        if queue:
            try:
                os.write(fd, queue[0])
                queue.pop(0)
                if not queue:
                    print("done speaking", flush=True)
            except BlockingIOError:
                pass  # the pipe is full: the same chunk next period, nothing lost
        else:
            with contextlib.suppress(BlockingIOError):  # nobody reads: silence is dropped
                os.write(fd, silence)
        due += PERIOD_S
        now = time.monotonic()
        if now - due > MAX_LAG_S:
            due = now
        time.sleep(max(0.0, due - now))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
