"""deploy/install.sh on the Pi's own architectures: a Debian 12 arm64 (and armhf) root
under qemu-user, booted with systemd-nspawn.

As a user does it: a copy of the checkout, `sudo deploy/install.sh` from the package
index (apt for the build packages and Debian's numpy, cryptography and systemd-python;
pip from PyPI for the rest, compiling pyalsaaudio there), `--remove-build-packages`
afterwards; then the unit started and asked `appliance status`. Slow (many minutes under
emulation) and online, so not in the default run: `-m qemu` selects it (README).

The devices are the rig's (alsa-lib's `file` plugin, a FIFO microphone fed in real time,
as in test_daemon_in_systemd.py). One drop-in, for qemu-user, not for a Pi: systemd under
qemu cannot set up `LoadCredential=` (the unit fails with 243/CREDENTIALS), so the key
comes from the environment instead; qemu writes and runs translated code and makes
x86-64 system calls, so `MemoryDenyWriteExecute=` and the seccomp filter are turned off
too (up front: which of them qemu trips over was not tried one by one). Emulation is also
slow: longer start and watchdog timeouts.

The numbers (install time, venv size, time to READY) are printed; run with `-s` to see
them. bench/results/install-on-arm.md keeps what was measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import fifo_mic, nspawn

pytestmark = [pytest.mark.system, pytest.mark.qemu, pytest.mark.timeout(4 * 3600)]

KEY = "AIzaSyTESTKEY-arm-0123456789abcdefghijklmn"
SRC = "/root/appliance"
APPLIANCE = "/opt/appliance/venv/bin/appliance"
VENV_PYTHON = "/opt/appliance/venv/bin/python"
RIG = "/srv/rig"
MIC_FIFO = f"{RIG}/mic.fifo"
FEEDER = "/usr/local/lib/appliance-test/fifo_mic.py"
MACHINE = {"arm64": "aarch64", "armhf": "armv7l"}
QEMU_DROPIN = """[Service]
# Only under qemu-user (see tests/system/test_install_on_arm.py): no credentials, W^X
# and seccomp there. The key comes from the environment instead.
LoadCredential=
Environment=GEMINI_API_KEY={key}
MemoryDenyWriteExecute=no
SystemCallFilter=
SystemCallArchitectures=
# Emulation is slow: the first imports alone can outlast the unit's 60 s.
TimeoutStartSec=900
WatchdogSec=300
# The rig's devices.
Environment=ALSA_CONFIG_PATH={rig}/asound.conf
ReadWritePaths={rig}
"""
CONFIG = """# the test rig: the FIFO microphone, the file speaker
[audio]
capture_device = "rigmic"
playback_device = "rigspk"
"""


def checkout_copy(dest: Path) -> None:
    """The files a clone has (tracked and new, not ignored): what a user copies over."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=nspawn.REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = nspawn.REPO / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


@pytest.fixture(scope="module", params=["arm64", "armhf"])
def arm_box(request: pytest.FixtureRequest) -> Iterator[tuple[str, nspawn.Container]]:
    arch: str = request.param
    why = nspawn.missing_tools() or nspawn.missing_emulation(arch)
    if why:
        pytest.skip(f"{arch} rig unavailable: {why}")
    root = nspawn.ensure_rootfs(arch=arch)
    src = Path(tempfile.mkdtemp(prefix="appliance-src-"))
    try:
        checkout_copy(src)
        binds = {src: "/mnt/src"}
        with nspawn.Container(root, binds, boot_timeout_s=900, name=f"appliance-{arch}") as box:
            yield arch, box
    finally:
        shutil.rmtree(src, ignore_errors=True)


def trust_what_the_host_trusts(box: nspawn.Container) -> None:
    """A host whose HTTPS goes through an inspecting proxy trusts that proxy's CA (local
    certificates, pip pointed at the system bundle): so must the container, or pip cannot
    reach PyPI. A no-op on a host without local CAs."""
    local = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    for cert in local:
        box.write(f"/usr/local/share/ca-certificates/{cert.name}", cert.read_text())
    if local:
        box.run("update-ca-certificates", timeout=600)
        box.write("/etc/pip.conf", "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


def test_install_boot_and_status(arm_box: tuple[str, nspawn.Container]) -> None:
    arch, box = arm_box
    assert box.run("uname", "-m").stdout.strip() == MACHINE[arch]
    box.run("cp", "-a", "/mnt/src", SRC)
    trust_what_the_host_trusts(box)

    started = time.monotonic()
    install = box.run(
        f"{SRC}/deploy/install.sh",
        "--key-stdin",
        "--no-start",
        "--remove-build-packages",
        input=KEY,
        timeout=3 * 3600,
    )
    install_s = time.monotonic() - started
    print(f"\n{arch}: {install.stderr.strip().splitlines()[-1]}")
    assert "removing the build packages this run installed" in install.stderr, install.stderr

    # numpy, cryptography and systemd-python are apt's, seen through the system site.
    where = box.run(
        VENV_PYTHON,
        "-c",
        "import json, importlib.metadata as m; print(json.dumps({n: "
        "[m.version(n), str(m.distribution(n).locate_file(''))] for n in "
        "('numpy', 'cryptography', 'systemd-python', 'pyalsaaudio', 'pymicro-vad')}))",
        timeout=600,
    )
    versions = json.loads(where.stdout)
    for name in ("numpy", "cryptography", "systemd-python"):
        assert versions[name][1].startswith("/usr/lib/python3/"), versions
    assert versions["pyalsaaudio"][1].startswith("/opt/appliance/venv/"), versions
    # pip compiled pyalsaaudio, so the compilers were there; now they are gone.
    assert (
        box.run("dpkg-query", "-W", "-f=${Status}", "gcc", check=False).stdout.find(
            "install ok installed"
        )
        == -1
    )
    webrtc = box.run(VENV_PYTHON, "-c", "import pywebrtc_audio", check=False, timeout=600)
    if arch == "armhf":  # no builds for 32-bit ARM: the pyproject marker leaves it out
        assert webrtc.returncode != 0
        assert versions["pymicro-vad"][0] == "1.0.2", versions  # the last with armv7 wheels
    else:
        assert webrtc.returncode == 0, webrtc.stderr
    venv_mb = int(box.run("du", "-sm", "/opt/appliance/venv").stdout.split()[0])
    site_mb = (
        box.run(
            "du",
            "-smc",
            "/usr/lib/python3/dist-packages/numpy",
            "/usr/lib/python3/dist-packages/cryptography",
            "/usr/lib/python3/dist-packages/systemd",
        )
        .stdout.splitlines()[-1]
        .split()[0]
    )

    # The rig's devices and the qemu drop-in; then the real unit, started as a user would.
    box.run("install", "-d", "-m", "0755", "-o", "appliance", "-g", "appliance", RIG)
    box.run("mkfifo", "-m", "0644", MIC_FIFO)
    box.write(
        f"{RIG}/asound.conf",
        nspawn.fifo_sound_card(MIC_FIFO, f"{RIG}/speaker.raw"),
    )
    box.write("/etc/appliance/config.toml", CONFIG, mode=0o640)
    box.run("chgrp", "appliance", "/etc/appliance/config.toml")
    box.write(
        "/etc/systemd/system/appliance.service.d/qemu.conf",
        QEMU_DROPIN.format(key=KEY, rig=RIG),
    )
    box.write(FEEDER, Path(fifo_mic.__file__).read_text())
    box.run("systemd-run", "--unit=rig-mic", "--quiet", "/usr/bin/python3", FEEDER, MIC_FIFO, "-")
    box.run("systemctl", "daemon-reload")

    started = time.monotonic()
    start = box.run("systemctl", "start", "appliance", check=False, timeout=1200)
    ready_s = time.monotonic() - started  # Type=notify: start returns at READY=1
    log = box.run("journalctl", "-u", "appliance", "--no-pager", "-n", "80").stdout
    assert start.returncode == 0, f"{start.stderr}\n{log}"
    props = box.run(
        "systemctl", "show", "appliance", "--property=ActiveState", "--property=StatusText"
    ).stdout.split()
    assert sorted(props) == ["ActiveState=active", "StatusText=idle"], f"{props}\n{log}"

    status = box.run(APPLIANCE, "status", "--json", timeout=600)
    assert json.loads(status.stdout)["state"] == "idle", status.stdout
    assert KEY not in box.run("journalctl", "--no-pager").stdout

    print(
        f"\n{arch} under qemu-user: install.sh {install_s:.0f} s, venv {venv_mb} MB "
        f"(+ {site_mb} MB of apt's numpy, cryptography, systemd), "
        f"systemctl start to READY {ready_s:.1f} s"
    )
