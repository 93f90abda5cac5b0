"""A booted Debian 12 in systemd-nspawn: real systemd and journald for the system tests.

The host has no systemd, so unit files, sd_notify, credentials, hardening and journald
fields can only be seen for real inside a container whose PID 1 is systemd. This module
builds that container's root file system once (debootstrap, cached under
`/var/cache/appliance-tests/`, keyed by a hash of what goes into it), builds the
project's wheels on the host once (same Debian 12, same Python 3.11, same glibc), and
boots throw-away containers from the cached root with `--volatile=overlay`: every write
lands in a tmpfs and vanishes at power-off, so the cache stays pristine and a boot costs
seconds, not a copy.

Usage (as root, with systemd-container and debootstrap installed):

    root = ensure_rootfs()
    with Container(root, binds={wheels: "/mnt/wheels"}) as box:
        box.run("systemctl", "is-system-running")
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "/var/cache/appliance-tests"))
SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-cffi-backend",
)
"""python3-cffi-backend: install.sh's python3-cryptography needs it through a virtual
package, which debootstrap's resolver does not follow (apt-get does)."""
RIG_VERSION = "1"
"""Bump to force a rebuild of cached roots when the way they are made changes."""

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_tools() -> str | None:
    """Why the rig cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn and debootstrap)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install systemd-container debootstrap util-linux"
    return None


def install_runtime_packages() -> tuple[str, ...]:
    """The apt packages deploy/install.sh needs at run time, read from the script itself.

    They go into the cached root so the script's apt step finds them installed and runs
    offline, while the script still checks for them for real.
    """
    text = (REPO / "deploy" / "install.sh").read_text(encoding="utf-8")
    match = re.search(r"^runtime_packages=\(([^)]*)\)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("deploy/install.sh has no `runtime_packages=(...)` line")
    return tuple(match.group(1).split())


def rootfs_packages() -> tuple[str, ...]:
    return tuple(sorted(set(BASE_PACKAGES) | set(install_runtime_packages())))


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds of one cache entry between concurrent test runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def host_arch() -> str:
    """This machine's Debian architecture name (amd64, arm64, armhf)."""
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def missing_emulation(arch: str) -> str | None:
    """Why a root of Debian architecture `arch` cannot run here, or None when it can.

    A foreign root runs under qemu-user through binfmt_misc: the handler must be
    registered with the F flag (qemu-user-static does so) so that the interpreter is
    found from inside the container, where the host's /usr/libexec is not visible.
    """
    if arch == host_arch():
        return None
    qemu = {"arm64": "aarch64", "armhf": "arm", "armel": "arm"}.get(arch, arch)
    handler = Path(f"/proc/sys/fs/binfmt_misc/qemu-{qemu}")
    if not handler.exists():
        return (
            f"no binfmt_misc handler for {arch}: apt-get install qemu-user-static "
            f"binfmt-support, then update-binfmts --enable qemu-{qemu}"
        )
    text = handler.read_text()
    if not text.startswith("enabled") or "F" not in text.split("flags:", 1)[-1].split()[0]:
        return f"{handler} is disabled or lacks the F flag: update-binfmts --enable qemu-{qemu}"
    return None


def ensure_rootfs(
    variant: str = "", extra_packages: Sequence[str] = (), arch: str | None = None
) -> Path:
    """The cached Debian 12 root, built by debootstrap on first use (about a minute).

    A `variant` adds `extra_packages` (e.g. openssh-server for the fleet test) in a root
    of its own, cached beside the default one: what other tests boot stays the same.
    `arch` is a Debian architecture (arm64, armhf): a foreign one is built and booted
    under qemu-user (see `missing_emulation`), in many minutes, as a root of its own.
    """
    packages = tuple(sorted(set(rootfs_packages()) | set(extra_packages)))
    foreign = arch is not None and arch != host_arch()
    if foreign:
        variant = f"{variant}-{arch}" if variant else str(arch)
    kind = f"rootfs-{SUITE}-{variant}-" if variant else f"rootfs-{SUITE}-"
    root = CACHE / f"{kind}{_key(RIG_VERSION, SUITE, *packages, *([str(arch)] if foreign else []))}"
    if (root / ".complete").exists():
        return root
    with _locked(root.name):
        if (root / ".complete").exists():
            return root
        build = Path(tempfile.mkdtemp(prefix=f"{root.name}.build-", dir=CACHE))
        try:
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    *([f"--arch={arch}"] if foreign else []),
                    f"--include={','.join(packages)}",
                    SUITE,
                    str(build),
                ],
                check=True,
                stdout=subprocess.PIPE,  # debootstrap says what failed on stdout
                stderr=subprocess.STDOUT,
                text=True,
            )
            _prepare(build)
            (build / ".complete").write_text(" ".join(packages) + "\n")
            shutil.rmtree(root, ignore_errors=True)
            build.rename(root)
            _prune(kind, keep=root)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"debootstrap failed:\n{exc.stdout[-3000:]}") from None
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return root


def _prepare(root: Path) -> None:
    """Make boots quick and quiet: no getty, no apt timers, a fixed hostname."""
    (root / "etc/hostname").write_text("appliance-test\n")
    wants = root / "etc/systemd/system"
    for name in (
        "console-getty.service",
        "getty@.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "systemd-networkd-wait-online.service",
    ):
        link = wants / name
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # The container shares the host's network: a server in it must not take the host's
    # port at boot. A test starts it on a port of its own (openssh-server's ssh.service).
    (wants / "multi-user.target.wants/ssh.service").unlink(missing_ok=True)


def ensure_wheels() -> Path:
    """Wheels of the project's run-time dependencies, built once per pyproject.toml."""
    pyproject = (REPO / "pyproject.toml").read_bytes()
    out = CACHE / f"wheels-{_key(RIG_VERSION, hashlib.sha256(pyproject).hexdigest())}"
    if (out / ".complete").exists():
        return out
    with _locked(out.name):
        if (out / ".complete").exists():
            return out
        shutil.rmtree(out, ignore_errors=True)
        _pip_wheel(out, REPO)
        for stale in out.glob("appliance-*.whl"):
            stale.unlink()  # the project itself is built fresh per session
        (out / ".complete").write_text("")
        _prune("wheels-", keep=out)
    return out


def _prune(prefix: str, keep: Path) -> None:
    """Drop cache entries of older keys, so a CI machine's disk does not fill up.

    Only `prefix` + key: a variant's entries (`rootfs-bookworm-ssh-...`) are not the
    default's old ones, and builds in progress (`...build-...`) are left alone.
    """
    entry = re.compile(re.escape(prefix) + r"[0-9a-f]{16}")
    for old in CACHE.glob(f"{prefix}*"):
        if old != keep and old.is_dir() and entry.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)


def build_project_wheel(dest: Path, source: Path = REPO) -> Path:
    """A wheel of the working tree (or of a copy of it) as it is now (seconds)."""
    _pip_wheel(dest, source, "--no-deps")
    (wheel,) = dest.glob("appliance-*.whl")
    return wheel


def _pip_wheel(dest: Path, *args: str | Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    python = REPO / ".venv/bin/python"
    pip = [str(python if python.exists() else "python3"), "-m", "pip", "wheel", "-q"]
    result = subprocess.run(
        [*pip, "-w", str(dest), *map(str, args)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed:\n{result.stderr[-3000:]}")


class Container:
    """One booted container over a cached root; all writes vanish when it stops."""

    def __init__(
        self,
        root: Path,
        binds: Mapping[Path | str, str] | None = None,
        boot_timeout_s: float = 90.0,
        name: str = "appliance-test",
    ) -> None:
        self.root = root
        self.binds = dict(binds or {})
        self.boot_timeout_s = boot_timeout_s
        self.name = f"{name}-{os.getpid()}"
        """The machine name, also the container's host name (distinct per test kind)."""
        self.pid1: int | None = None
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._console = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the container)

    def __enter__(self) -> Container:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        cmd = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.root}",
            f"--machine={self.name}",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--console=pipe",
        ]
        cmd += [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        self._nspawn = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.boot_timeout_s
        while self.pid1 is None:
            if self._nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited early:\n{self.console()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the container did not start:\n{self.console()[-3000:]}")
            self.pid1 = _find_pid1(self._nspawn.pid)
            time.sleep(0.1)
        # systemd's bus may not be up yet right after exec: ask until it answers.
        while True:
            left = max(5.0, deadline - time.monotonic())
            state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=left)
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
                self.stop()
                raise RuntimeError(
                    f"boot ended as {state.stdout.strip()!r} ({state.stderr.strip()}):\n{failed}"
                )
            time.sleep(0.2)

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces), as root."""
        result = subprocess.run(
            self._enter(argv), capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def _enter(self, argv: tuple[str, ...] | list[str]) -> list[str]:
        """The host command line that runs `argv` inside the container, as root."""
        if self.pid1 is None:
            raise RuntimeError("the container is not running")
        cmd = ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-r", "-w"]
        return [*cmd, "env", "-i", f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", *argv]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create a file inside the container (from inside, so it lands in the overlay)."""
        self.run("install", "-D", "-m", f"{mode:o}", "/dev/stdin", path, input=text)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Like `write`, for binary content (audio)."""
        argv = ("install", "-D", "-m", f"{mode:o}", "/dev/stdin", path)
        result = subprocess.run(self._enter(argv), input=data, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"writing {path} failed: {result.stderr.decode(errors='replace')}")

    def read_bytes(self, path: str) -> bytes:
        """A file's bytes as seen inside the container (`cat` from inside: any mount)."""
        result = subprocess.run(self._enter(("cat", "--", path)), capture_output=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"reading {path} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def cpu_ns(self, unit: str) -> int:
        """CPU time a unit has used, in nanoseconds.

        systemd's `CPUUsageNSec` when it can account (cgroup v2, or v1 with a writable
        cpuacct controller); otherwise (nspawn on a cgroup v1 host mounts the controllers
        read-only, so the property reads `[not set]`) the user+system time of the unit's
        main process and its threads from /proc: the same number for a one-process
        service, which every appliance unit is.
        """
        usage = self.run("systemctl", "show", unit, "--property=CPUUsageNSec", "--value")
        if usage.stdout.strip().isdigit():
            return int(usage.stdout)
        pid = self.run("systemctl", "show", unit, "--property=MainPID", "--value").stdout.strip()
        if pid in ("", "0"):
            raise AssertionError(f"{unit} has no main process to measure")
        stat = self.run("cat", f"/proc/{pid}/stat").stdout
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        hz = int(self.run("getconf", "CLK_TCK").stdout)
        return ticks * 1_000_000_000 // hz

    def console(self) -> str:
        self._console.seek(0)
        return self._console.read().decode(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Power off (SIGTERM to nspawn asks PID 1 for a clean shutdown), then make sure."""
        proc, self._nspawn, pid1, self.pid1 = self._nspawn, None, self.pid1, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # nspawn killed, its container's init may live on (seen under qemu-user: systemd
        # did not power off when nspawn asked it to): killing it ends the container.
        if pid1 is not None and _runs_systemd(pid1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)


def _runs_systemd(pid: int) -> bool:
    """True once the container's first process has exec'd systemd (not nspawn's stub).

    In a foreign root the process's executable is qemu (binfmt_misc), running systemd.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return exe.endswith("/systemd") or "qemu-" in exe.rsplit("/", 1)[-1]


def _find_pid1(nspawn_pid: int) -> int | None:
    """The host pid of the container's init: the descendant whose innermost pid is 1."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                if len(ids) > 1 and ids[-1] == "1" and _runs_systemd(pid):
                    return pid
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return None


def fifo_sound_card(mic_fifo: str, speaker: str, *, with_defaults: bool = True) -> str:
    """An asound.conf with the rig's devices for a container: `rigmic` reads the FIFO a
    feeder paces, `rigspk` writes raw audio to `speaker`. `with_defaults` includes
    alsa-lib's own config first (for a file given as ALSA_CONFIG_PATH)."""
    return (
        ("</usr/share/alsa/alsa.conf>\n" if with_defaults else "")
        + f'pcm.rigmic {{ type file slave.pcm "null" file "/dev/null" infile "{mic_fifo}" '
        'format "raw" }\n'
        f'pcm.rigspk {{ type file slave.pcm "null" file "{speaker}" format "raw" }}\n'
    )
