"""A virtual sound card for machines without one: a JACK dummy server and a "room".

The demo (and the test rigs) need audio that runs in real time without hardware: the
JACK server's dummy backend paces on a timer, and alsa-lib's `jack` plugin gives the
appliance ordinary ALSA device names on it (`alsa_config`). The `RoomClient` is the
room around the appliance: its `mic` port plays what a person says into the
appliance's microphone, sample by sample, and its `spk` port records what the
appliance's speaker plays, block by block, both on the JACK clock.

Artefact of the alsa jack plugin: after drop()/drain() the plugin's port repeats its
last block until written again, so `RoomClient.sound_frames` counts a block identical to
the one before it as silence; test signals must therefore not repeat exactly every JACK
period (610 Hz is safe, 600 Hz is not).

Needs `jackd` (apt jackd2), the plugin (apt libasound2-plugins) and JACK-Client (pip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RATE = 48_000
BLOCK = 480  # frames per JACK period: 10 ms
SYSTEM_CONF = "/usr/share/alsa/alsa.conf"


def jack_available() -> str | None:
    """None if the rig can run here, else why not (for pytest.skip)."""
    if shutil.which("jackd") is None:
        return "jackd is not installed (apt-get install jackd2 libasound2-plugins)"
    if not any(
        os.path.exists(p)
        for p in (
            "/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_jack.so",
            "/usr/lib/aarch64-linux-gnu/alsa-lib/libasound_module_pcm_jack.so",
        )
    ):
        return "the alsa jack plugin is missing (apt-get install libasound2-plugins)"
    try:
        import jack  # noqa: F401
    except Exception as exc:  # OSError when libjack is missing
        return f"JACK-Client cannot load: {exc}"
    return None


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started jackd dies (even by a
    crash or SIGKILL), so a failed test run leaves no server behind. Linux only."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


JACK_REGISTRY = Path("/dev/shm/jack-shm-registry")
"""libjack's table of running servers: 8 slots of (pid, name) after a 24-byte header."""


def reclaim_dead_servers(registry: Path = JACK_REGISTRY) -> int:
    """Free the registry slots of servers whose process is gone; how many were freed.

    jackd frees its slot when it stops cleanly, and a new server reclaims a dead one's
    slot only if it has the same name. Each rig names its server afresh, so a few rigs
    killed (a test run cut short, SIGKILL) fill all 8 slots and every later jackd fails
    with "Too many servers already active". Best effort: any surprise leaves the file
    alone."""
    import mmap
    import struct

    freed = 0
    try:
        with registry.open("r+b") as f, mmap.mmap(f.fileno(), 0) as mem:
            magic, hdr_len = (
                struct.unpack_from("<I", mem, 0)[0],
                struct.unpack_from("<i", mem, 16)[0],
            )
            slot = (hdr_len - 24) // 8
            if magic != 0x4A41434B or slot < 8:  # "JACK"
                return 0
            for i in range(8):
                offset = 24 + i * slot
                pid = struct.unpack_from("<i", mem, offset)[0]
                if pid <= 0:
                    continue
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    mem[offset : offset + slot] = bytes(slot)
                    freed += 1
                except PermissionError:
                    pass  # another user's live server
    except (OSError, ValueError, struct.error):
        return 0
    return freed


class JackServer:
    """One jackd with the dummy backend (paced by a timer, no sound card)."""

    def __init__(self, name: str | None = None, rate: int = RATE, block: int = BLOCK) -> None:
        self.name = name or f"rig-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.block = block
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        import jack

        # Probing a server that is still starting makes libjack print "Cannot connect to
        # server socket" on stderr for every try: keep that out of the terminal.
        jack.set_error_function(lambda message: None)

        reclaim_dead_servers()
        cmd = ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy",
               "-r", str(self.rate), "-p", str(self.block), "-C", "2", "-P", "2"]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"jackd {self.name} exited: {err[-500:]}")
            try:
                probe = jack.Client("probe", servername=self.name, no_start_server=True)
                probe.close()
                return
            except jack.JackError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"jackd {self.name} did not come up in {timeout_s} s"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Make this server the default for JACK clients (the alsa jack plugin too)."""
        old = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = old


class _RigCore:
    """The JACK client itself: `mic` out (injected signal), `spk` in (recorded).

    It runs in a child process (see `RigClient`): its process callback is Python and
    needs the GIL, and pyalsaaudio holds the GIL while alsa-lib's jack plugin connects a
    new client to the server, which waits for every client's callback. In one process
    the two deadlock; in two they cannot.
    """

    def __init__(self, server: str, name: str, max_seconds: float) -> None:
        import jack
        import numpy as np

        self._np = np
        self.client = jack.Client(name, servername=server, no_start_server=True)
        self.rate = self.client.samplerate
        self.block = self.client.blocksize
        self.mic = self.client.outports.register("mic")
        self.spk = self.client.inports.register("spk")
        self._signal: Any = np.zeros(0, dtype=np.float32)
        self._signal_at = 0
        self._loop_signal = False
        nblocks = int(max_seconds * self.rate / self.block)
        self._rec = np.zeros((nblocks, self.block), dtype=np.float32)
        self._rec_frames = np.zeros(nblocks, dtype=np.int64)
        self._rec_n = 0
        self.recording = False
        self._echo: Any = None  # the speaker's recent samples, oldest first (None: no echo)
        self._echo_taps: list[tuple[int, float]] = []  # (delay in samples, gain)
        self._noise: Any = None  # the room's own hiss, looped (None: digital silence)
        self._last_spk = np.zeros(self.block, dtype=np.float32)
        self.client.set_process_callback(self._process)
        self.client.activate()

    # The JACK process thread: no allocation beyond numpy views, no locks held long.
    def _process(self, frames: int) -> None:
        now = self.client.last_frame_time
        out = self.mic.get_array()
        sig = self._signal
        if len(sig):
            pos = now - self._signal_at
            if self._loop_signal:
                idx = (pos + self._np.arange(frames)) % len(sig)
                out[:] = sig[idx]
            elif 0 <= pos < len(sig):
                piece = sig[pos : pos + frames]
                out[: len(piece)] = piece
                out[len(piece) :] = 0
            else:
                out[:] = 0
        else:
            out[:] = 0
        noise = self._noise
        if noise is not None:
            at = now % (len(noise) - frames)
            piece = noise[at : at + frames]
            out[: len(piece)] += piece
        spk = self.spk.get_array()
        if self._echo is not None and frames == self.block:
            # The room returns the speaker to the microphone: the direct path, late and
            # quieter, then its reflections. A block identical to the one before is the
            # jack plugin repeating itself: silence.
            echo = self._echo
            echo[:-frames] = echo[frames:]
            echo[-frames:] = 0 if self._np.array_equal(spk, self._last_spk) else spk
            end = len(echo)
            for delay, gain in self._echo_taps:
                out += gain * echo[end - delay - frames : end - delay]
            self._last_spk[:] = spk
        if self.recording and self._rec_n < len(self._rec) and frames == self.block:
            self._rec[self._rec_n] = spk
            self._rec_frames[self._rec_n] = now
            self._rec_n += 1

    def frame_time(self) -> int:
        return int(self.client.frame_time)

    def play(self, signal: Any, loop: bool, at_frame: int | None) -> int:
        start = self.frame_time() + self.block if at_frame is None else at_frame
        self._loop_signal = loop
        self._signal_at = start
        self._signal = self._np.asarray(signal, dtype=self._np.float32)
        return start

    def set_echo(self, delay_ms: int, gain: float, reverb_ms: int) -> None:
        if gain <= 0:
            self._echo = None
            return
        taps = [(max(1, delay_ms * self.rate // 1000), gain)]
        if reverb_ms > 0:
            # Reflections: eight, spread over the reverb time, decaying by 60 dB over it.
            for k, after_ms in enumerate((7, 13, 23, 37, 53, 79, 113, 160)):
                at = after_ms * reverb_ms / 160
                taps.append((taps[0][0] + int(at * self.rate / 1000),
                             gain * 0.6 * 10 ** (-3 * at / reverb_ms) * (-1) ** k))  # fmt: skip
        self._echo_taps = taps
        longest = max(d for d, _ in taps) + 2 * self.block
        self._echo = self._np.zeros(longest, dtype=self._np.float32)

    def set_noise(self, dbfs: float | None) -> None:
        if dbfs is None:
            self._noise = None
            return
        rng = self._np.random.default_rng(7)
        level = 10 ** (dbfs / 20)  # RMS relative to full scale
        self._noise = (rng.standard_normal(self.rate * 3) * level).astype(self._np.float32)

    def start_recording(self) -> None:
        self._rec_n = 0
        self.recording = True

    def stop_recording(self) -> None:
        self.recording = False

    def blocks(self) -> tuple[Any, Any]:
        n = self._rec_n
        return self._rec_frames[:n].copy(), self._rec[:n].copy()

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()


def _rig_main(conn: Any, server: str, name: str, max_seconds: float) -> None:
    """The rig process: serve `(method, args)` requests until `close`."""
    _die_with_parent()
    try:
        core = _RigCore(server, name, max_seconds)
    except Exception as exc:
        conn.send(("error", repr(exc)))
        return
    conn.send(("ok", (core.rate, core.block)))
    try:
        while True:
            try:
                method, args = conn.recv()
            except EOFError:  # the test process went away
                break
            if method == "close":
                break
            try:
                conn.send(("ok", getattr(core, method)(*args)))
            except Exception as exc:
                conn.send(("error", repr(exc)))
    finally:
        core.close()
        with contextlib.suppress(OSError):
            conn.send(("ok", None))


class RoomClient:
    """The room's JACK client, `mic` out and `spk` in, run in a child process.

    The methods are those of an in-process client; each is one request to the child.
    """

    def __init__(self, server: str, name: str = "room", max_seconds: float = 120.0) -> None:
        import multiprocessing

        import numpy as np

        self._np = np
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_rig_main, args=(child, server, name, max_seconds), daemon=True
        )
        self._proc.start()
        child.close()
        self.rate, self.block = self._reply(timeout=20)

    def _reply(self, timeout: float = 10.0) -> Any:
        if not self._conn.poll(timeout):
            raise RuntimeError("the JACK room client did not answer")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"the JACK room client failed: {value}")
        return value

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        return self._reply()

    @property
    def frame_time(self) -> int:
        """The JACK clock now (frames)."""
        return int(self._call("frame_time"))

    def play(self, signal: Any, *, loop: bool = False, at_frame: int | None = None) -> int:
        """Inject `signal` (float32, -1..1, at the server rate) into `mic`; returns its start."""
        return int(self._call("play", self._np.asarray(signal, self._np.float32), loop, at_frame))

    def echo(self, delay_ms: int = 50, gain: float = 0.5, reverb_ms: int = 0) -> None:
        """Return what the speaker plays to the microphone, `delay_ms` late, times `gain`,
        and with `reverb_ms` its reflections after it, down 60 dB at the end (a room and
        a speaker next to the microphone; 0 gain: no echo)."""
        self._call("set_echo", delay_ms, gain, reverb_ms)

    def noise(self, dbfs: float | None = -60.0) -> None:
        """Add the room's own hiss to the microphone, white noise at `dbfs` RMS (a real
        microphone and room are never digital silence: -60 dBFS is a quiet room through a
        typical MEMS microphone); None: digital silence."""
        self._call("set_noise", dbfs)

    def start_recording(self) -> None:
        self._call("start_recording")

    def stop_recording(self) -> None:
        self._call("stop_recording")

    def blocks(self) -> tuple[Any, Any]:
        """(frame number of each recorded block, the blocks) so far."""
        frames, blocks = self._call("blocks")
        return frames, blocks

    def sound_frames(self, threshold: float = 1e-4) -> Any:
        """Frame numbers of recorded blocks that carry new sound.

        A block that is silent, or identical to the one before it (the jack plugin
        repeating its last block after a drop), does not count.
        """
        np = self._np
        frames, blocks = self.blocks()
        if not len(blocks):
            return frames
        loud = np.abs(blocks).max(axis=1) > threshold
        repeat = np.zeros(len(blocks), dtype=bool)
        repeat[1:] = np.all(blocks[1:] == blocks[:-1], axis=1)
        return frames[loud & ~repeat]

    def last_sound_frame(self, threshold: float = 1e-4) -> int | None:
        """The JACK frame just after the last block of new sound (None: no sound)."""
        frames = self.sound_frames(threshold)
        return int(frames[-1]) + self.block if len(frames) else None

    def close(self) -> None:
        if not self._proc.is_alive():
            return
        try:
            self._conn.send(("close", ()))
            self._reply()
        except (OSError, EOFError, RuntimeError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()


def alsa_config(path: Path, client: str = "room", rate: int = RATE) -> Path:
    """Write an ALSA config with `roommic` / `roomspk` on the client's ports; its path.

    `plug` converts between the appliance's rates (16 and 24 kHz) and the server's.
    """

    def device(direction: str, port: str) -> str:
        return (
            f"{{ type plug slave {{ pcm {{ type jack {direction}_ports "
            f'{{ 0 "{client}:{port}" }} }} rate {rate} }} }}'
        )

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<{SYSTEM_CONF}>\n"
        f"pcm.roommic {device('capture', 'mic')}\n"
        f"pcm.roomspk {device('playback', 'spk')}\n"
    )
    return path
