"""The fleet role (deploy/ansible) applied for real: ansible-playbook over SSH to a
booted Debian 12 (systemd-nspawn), as to a Pi on the network.

The container is a variant of the system tests' root with openssh-server and sudo, and
the role's apt packages already installed (its apt step finds them there, as install.sh's
does in the other system tests). Of the Raspberry Pi OS packages, Debian has
python3-spidev: the first run installs it from the Debian mirror (apt-get update and
install, as install.sh would), the one step that needs the mirror after the root is
built. It logs in
as an ordinary user `fleet` that has sudo, as `pi` would, and installs from the rig's
wheel directory (`appliance_pip_find_links`, `appliance_pip_no_index`). The API key
comes from a vault-encrypted vars file made here with a test password.

Checked: the same result as deploy/install.sh (service active after READY=1, `appliance
status` answers the operator, config and key with their owners and modes, Debian's numpy,
cryptography and systemd used from the system site packages); a second run changes
nothing and restarts nothing, and so does its `--check` preview; a changed variable or
key, or a new build of the package, restarts once; a bad value fails the play with
appliance's own message and leaves the device as it was; the key is in no output (run
with --diff) and no journal line; ansible-lint's production profile passes.

Slow (about 10 minutes on a loaded 2-core VM, 10 plays): marker `fleet`, left out of the
default run. Run with
    .venv/bin/pip install -e '.[fleet]' && sudo .venv/bin/python -m pytest -m fleet
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.rig import fifo_mic, nspawn
from tests.rig.nspawn import Container

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(900)]

ANSIBLE_DIR = nspawn.REPO / "deploy" / "ansible"
BIN = Path(sys.executable).parent
KEY = "AIzaSyTESTKEY-fleet-0123456789abcdefghijk"
NEW_KEY = "AIzaSyTESTKEY-fleet-rotated-9876543210zyx"
VAULT_PASSWORD = "fleet-test-vault-password"
APPLIANCE = "/opt/appliance/venv/bin/appliance"
HOST = "speaker1"
MIC_FIFO = "/srv/rig/mic.fifo"
FEEDER = "/usr/local/lib/appliance-test/fifo_mic.py"
RECAP = re.compile(rf"^{HOST}\s*:\s*(.*)$", re.MULTILINE)


def role_apt_packages() -> list[str]:
    """The role's own apt list: baked into the root so its apt step runs offline."""
    import yaml  # ansible-core's dependency

    defaults = ANSIBLE_DIR / "roles" / "appliance" / "defaults" / "main.yml"
    return list(yaml.safe_load(defaults.read_text())["appliance_apt_packages"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float
    recap: dict[str, int] = field(default_factory=dict)


@dataclass
class Fleet:
    box: Container
    work: Path
    port: int
    wheel: str | None = None
    """The appliance_wheel the hosts get; None: the role builds one from the checkout."""
    runs: list[Run] = field(default_factory=list)

    def inventory(self, config: dict[str, Any], key: str = KEY) -> None:
        """hosts.yml with this host's variables, and the key in a vault-encrypted file."""
        inventory = self.work / "inventory"
        host = {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "fleet",
            "ansible_ssh_private_key_file": str(self.work / "id_ed25519"),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
            "appliance_pip_find_links": ["/mnt/wheels"],
            "appliance_pip_no_index": True,
            "appliance_config": config,
            **({"appliance_wheel": self.wheel} if self.wheel else {}),
        }
        hosts = {"appliances": {"hosts": {HOST: host}}}
        (inventory / "group_vars" / "appliances").mkdir(parents=True, exist_ok=True)
        (inventory / "hosts.yml").write_text(json.dumps(hosts, indent=2))  # JSON is YAML
        vault = inventory / "group_vars" / "appliances" / "vault.yml"
        vault.write_text(f"appliance_api_key: {key}\n")
        ansible(self.work, "ansible-vault", "encrypt", "--vault-password-file",
                str(self.work / "vault-password"), str(vault))  # fmt: skip
        assert vault.read_text().startswith("$ANSIBLE_VAULT;"), "the vault file is not encrypted"

    def play(self, *options: str) -> Run:
        start = time.monotonic()
        result = ansible(
            self.work,
            "ansible-playbook",
            "-i",
            str(self.work / "inventory" / "hosts.yml"),
            "--vault-password-file",
            str(self.work / "vault-password"),
            "--diff",
            *options,
            str(ANSIBLE_DIR / "site.yml"),
            check=False,
        )
        run = Run(result.returncode, result.stdout + result.stderr, time.monotonic() - start)
        match = RECAP.search(run.output)
        if match:
            run.recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
        self.runs.append(run)
        print(f"ansible-playbook: {run.seconds:.1f} s, {run.recap}")
        return run

    def main_pid(self) -> str:
        return show(self.box, "MainPID")["MainPID"]


def ansible(
    work: Path, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """An Ansible command from this venv, with its state kept in the test's folder."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    result = subprocess.run(
        [str(BIN / tool), *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{tool} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def show(box: Container, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", "appliance", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def stat(box: Container, path: str) -> str:
    return box.run("stat", "-c", "%a %U:%G", path).stdout.strip()


CONFIG: dict[str, Any] = {
    "live": {"voice": "Puck", "language": "en-GB", "proactive_audio": None},
    "audio": {
        "capture_device": "rigmic",
        "playback_device": "rigspk",
        "volume": 55,
        "earcons": ["wake", "done"],
    },
    "leds": {"states": {"idle": {"pattern": "off"}}},
    "behaviour": {"conversation_timeout_s": 12.5, "tools": False},
}


def sound_card(box: Container) -> None:
    """The container has none: alsa-lib devices system-wide (/etc/asound.conf), a
    microphone paced by the rig's FIFO feeder and a speaker into /dev/null, which the
    host's variables then name (the unit file stays as shipped)."""
    box.run("install", "-d", "-m", "0755", "/srv/rig")
    box.run("mkfifo", "-m", "0644", MIC_FIFO)
    box.write(
        "/etc/asound.conf",
        nspawn.fifo_sound_card(MIC_FIFO, "/dev/null", with_defaults=False),
    )
    box.write(FEEDER, Path(fifo_mic.__file__).read_text())
    box.run("systemd-run", "--unit=rig-mic", "--quiet", "/usr/bin/python3", FEEDER, MIC_FIFO,
            "/srv/rig/speech.raw")  # fmt: skip


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    why = nspawn.missing_tools()
    if why:
        pytest.skip(f"booted-systemd rig unavailable: {why}")
    if not (BIN / "ansible-playbook").exists():
        pytest.skip("Ansible is not installed here: pip install -e '.[fleet]'")
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client: apt-get install openssh-client")
    # python3-cffi-backend: python3-cryptography needs it through a virtual package,
    # which debootstrap's resolver does not follow (apt-get does).
    extra = ("openssh-server", "sudo", "python3-cffi-backend", *role_apt_packages())
    root = nspawn.ensure_rootfs("ssh", extra)
    wheels = nspawn.ensure_wheels()
    work = Path(tempfile.mkdtemp(prefix="appliance-fleet-"))
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id_ed25519")],
            check=True,
        )
        (work / "vault-password").write_text(VAULT_PASSWORD + "\n")
        (work / "vault-password").chmod(0o600)
        with Container(root, binds={wheels: "/mnt/wheels"}, name="appliance-fleet") as box:
            port = free_port()
            box.run("useradd", "--create-home", "--shell", "/bin/bash", "fleet")
            box.write("/home/fleet/.ssh/authorized_keys", (work / "id_ed25519.pub").read_text())
            box.run("chown", "-R", "fleet:fleet", "/home/fleet/.ssh")
            box.run("chmod", "0700", "/home/fleet/.ssh")
            box.write("/etc/sudoers.d/fleet", "fleet ALL=(ALL) NOPASSWD: ALL\n", mode=0o440)
            box.write(
                "/etc/ssh/sshd_config.d/fleet-test.conf",
                f"Port {port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\n",
            )
            box.run("systemctl", "start", "ssh")
            sound_card(box)
            yield Fleet(box, work, port)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_first_run_installs_like_install_sh(fleet: Fleet) -> None:
    fleet.inventory(CONFIG)
    run = fleet.play()
    assert run.returncode == 0, run.output
    assert run.recap["failed"] == 0 and run.recap["changed"] > 0, run.recap
    box = fleet.box
    # Type=notify: `active` only after READY=1.
    props = show(box, "ActiveState", "SubState", "StatusText", "User", "UnitFileState")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["User"] == "appliance" and props["UnitFileState"] == "enabled", props
    assert props["StatusText"], "no STATUS= from the service"
    log = box.run("journalctl", "-u", "appliance", "--no-pager", "-o", "cat").stdout
    assert "ready: mode toggle" in log
    assert "API key from systemd credential gemini-api-key" in log
    # The operator Ansible logged in as may use the control socket, as with install.sh.
    assert "appliance" in box.run("id", "-nG", "fleet").stdout.split()
    status = json.loads(
        box.run("runuser", "-u", "fleet", "--", APPLIANCE, "status", "--json").stdout
    )
    assert status["state"] == "idle", status  # the devices the host's variables name: open
    # Files, owners, modes: as install.sh leaves them.
    assert stat(box, "/etc/appliance") == "755 root:root"
    assert stat(box, "/etc/appliance/config.toml") == "640 root:appliance"
    assert stat(box, "/etc/appliance/gemini-api-key") == "600 root:root"
    assert stat(box, "/etc/systemd/system/appliance.service") == "644 root:root"
    assert box.read_bytes("/etc/appliance/gemini-api-key").decode() == KEY
    unit = (nspawn.REPO / "systemd" / "appliance.service").read_bytes()
    assert box.read_bytes("/etc/systemd/system/appliance.service") == unit
    # The host's variables are what the installed appliance reads.
    check = box.run(APPLIANCE, "check", "/etc/appliance/config.toml").stdout
    assert "OK" in check
    values = box.run(
        "/opt/appliance/venv/bin/python",
        "-c",
        "from appliance import config; c = config.load('/etc/appliance/config.toml'); "
        "print(c.live.voice, c.live.language, c.audio.volume, ','.join(c.audio.earcons), "
        "c.leds.states['idle'].pattern, c.behaviour.conversation_timeout_s, c.behaviour.tools)",
    ).stdout.split()
    assert values == ["Puck", "en-GB", "55", "wake,done", "off", "12.5", "False"]
    # apt first: Debian's numpy, cryptography and systemd, seen through the system site.
    where = box.run(
        "/opt/appliance/venv/bin/python",
        "-c",
        "import numpy, cryptography, systemd; "
        "print(numpy.__file__, cryptography.__file__, systemd.__file__)",
    ).stdout.split()
    assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in where), where
    # The key: in no output of the play and no journal line.
    assert KEY not in run.output
    assert KEY not in box.run("journalctl", "--no-pager", "-o", "json").stdout


def test_second_run_changes_nothing(fleet: Fleet) -> None:
    pid = fleet.main_pid()
    run = fleet.play()
    assert run.returncode == 0, run.output
    assert run.recap["changed"] == 0 and run.recap["failed"] == 0, run.output
    assert fleet.main_pid() == pid, "restarted although nothing changed"
    # --check --diff, the preview of a run: nothing to do either.
    preview = fleet.play("--check")
    assert preview.returncode == 0, preview.output
    assert preview.recap["changed"] == 0, preview.output


def test_a_changed_variable_or_key_restarts_once(fleet: Fleet) -> None:
    pid = fleet.main_pid()
    fleet.inventory({**CONFIG, "audio": {**CONFIG["audio"], "volume": 70}}, key=NEW_KEY)
    run = fleet.play()
    assert run.returncode == 0, run.output
    assert run.recap["changed"] == 3, run.output  # config.toml, the key, one restart
    assert fleet.main_pid() != pid, "not restarted after a change"
    assert show(fleet.box, "ActiveState", "NRestarts") == {
        "ActiveState": "active",
        "NRestarts": "0",
    }
    assert "volume = 70" in fleet.box.read_bytes("/etc/appliance/config.toml").decode()
    assert fleet.box.read_bytes("/etc/appliance/gemini-api-key").decode() == NEW_KEY
    assert NEW_KEY not in run.output and KEY not in run.output
    again = fleet.play()
    assert again.recap["changed"] == 0, again.output


def test_a_new_version_of_the_package_is_installed_and_restarts_once(fleet: Fleet) -> None:
    """An update: a wheel whose code differs (given as `appliance_wheel`) replaces the
    installed package although its version number is the same."""
    pid = fleet.main_pid()
    source = fleet.work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(nspawn.REPO / name, source)
    shutil.copytree(nspawn.REPO / "appliance", source / "appliance")
    marker = "# fleet test: a new build of the same version"
    with open(source / "appliance" / "__init__.py", "a") as f:
        f.write(f"\n{marker}\n")
    fleet.wheel = str(nspawn.build_project_wheel(source / "dist", source))
    fleet.inventory({**CONFIG, "audio": {**CONFIG["audio"], "volume": 70}}, key=NEW_KEY)
    run = fleet.play()
    assert run.returncode == 0, run.output
    # The wheel copied, installed, remembered; one restart.
    assert run.recap["changed"] == 4, run.output
    assert fleet.main_pid() != pid, "not restarted after an update"
    init = "/opt/appliance/venv/lib/python3.11/site-packages/appliance/__init__.py"
    assert marker in fleet.box.read_bytes(init).decode()
    assert fleet.play().recap["changed"] == 0


def test_a_bad_value_fails_the_play_with_the_configs_own_error(fleet: Fleet) -> None:
    pid = fleet.main_pid()
    before = fleet.box.read_bytes("/etc/appliance/config.toml")
    fleet.inventory({**CONFIG, "audio": {**CONFIG["audio"], "volume": 150}}, key=NEW_KEY)
    # The preview shows the change to come and the restart it would cause (it checks the
    # value only when it writes it).
    preview = fleet.play("--check")
    assert preview.returncode == 0 and preview.recap["changed"] == 2, preview.output
    assert "+volume = 150" in preview.output
    run = fleet.play()
    assert run.returncode != 0
    assert run.recap["failed"] == 1, run.output
    assert "audio.volume: Input should be less than or equal to 100 (got 150)" in run.output
    assert fleet.box.read_bytes("/etc/appliance/config.toml") == before
    assert fleet.main_pid() == pid


def test_the_role_is_lint_clean() -> None:
    """ansible-lint's production profile, offline (no schema or Galaxy look-ups)."""
    if not (BIN / "ansible-lint").exists():
        pytest.skip("ansible-lint is not installed here: pip install -e '.[fleet]'")
    with tempfile.TemporaryDirectory(prefix="appliance-lint-") as work:
        result = ansible(
            Path(work), "ansible-lint", "--offline", "--profile", "production",
            str(ANSIBLE_DIR), check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
