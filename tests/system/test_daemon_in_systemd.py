"""The real daemon under the real unit in a booted Debian 12: `appliance run` as installed
by deploy/install.sh, started by systemd, talking to the Live emulator on the host.

Everything is the shipped unit (user, groups, credential, directories, hardening,
Type=notify, ExecReload) except a test drop-in: the ALSA devices (an ALSA config in
`ALSA_CONFIG_PATH`, since `ProtectHome=` hides ~/.asoundrc), write access to the rig's
folder for the speaker file, and a short watchdog (`WatchdogSec=3`, so a loop that stalls
for 3 s anywhere in these tests is a restart the last test notices).

Audio: the container has no sound card, so the devices are alsa-lib's `file` plugin. The
speaker is a file (unpaced: playback is never idle-busy, and every reply byte lands
there). The microphone's `infile` is a FIFO fed at real-time pace by tests/rig/fifo_mic.py
running in the container; a plain file would have the capture thread spinning a core
(see that module). A typed turn (`appliance ask`) needs no microphone; a spoken turn
(`appliance talk`, then speech into the FIFO) goes through the whole capture path.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from appliance.live.emulator import Reply, Scenario, ThreadedEmulator
from tests.rig import fifo_mic, nspawn
from tests.rig.emulator import speech_16k
from tests.rig.nspawn import Container

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

KEY = "AIzaSyTESTKEY-daemon-9876543210zyxwvutsrq"
INSTALL = ["/mnt/src/deploy/install.sh", "--wheels", "/mnt/wheels", "--wheels", "/mnt/project"]
APPLIANCE = "/opt/appliance/venv/bin/appliance"
CONFIG = "/etc/appliance/config.toml"
DROPIN = "/etc/systemd/system/appliance.service.d/test.conf"
RIG = "/srv/rig"
MIC_FIFO = f"{RIG}/mic.fifo"
SPEECH = f"{RIG}/speech.raw"
SPEAKER = f"{RIG}/speaker.raw"
FEEDER = "/usr/local/lib/appliance-test/fifo_mic.py"
REPLY_TEXT = "The kettle is on and the lights are off."


def chirp(seconds: float = 1.5, rate: int = 24_000) -> bytes:
    """A 300 -> 1500 Hz sweep: no stretch of it repeats, so finding it proves order."""
    n = int(seconds * rate)
    k = (1500 - 300) / seconds
    samples = (
        int(8000 * math.sin(2 * math.pi * (300 * t + k * t * t / 2)))
        for t in (i / rate for i in range(n))
    )
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


REPLY_PCM = chirp()


def show(box: Container, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", "appliance", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(box: Container, unit: str = "appliance") -> list[dict[str, Any]]:
    out = box.run("journalctl", "-u", unit, "-o", "json", "--no-pager").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(box: Container) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in journal(box)]


def wait_until(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll `check` until it returns something true; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class StatusLog:
    """`systemctl status`'s STATUS= line as it changes, polled (short states may be missed)."""

    def __init__(self, box: Container) -> None:
        self.box = box
        self.seen: list[str] = []

    def now(self) -> str:
        status = show(self.box, "StatusText")["StatusText"]
        if not self.seen or self.seen[-1] != status:
            self.seen.append(status)
        return status

    def wait(self, wanted: str, timeout_s: float = 30.0) -> None:
        try:
            wait_until(f"StatusText={wanted}", lambda: self.now() == wanted, timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; seen {self.seen}") from None


def appliance(box: Container, *args: str, check: bool = True) -> str:
    return box.run(APPLIANCE, *args, check=check).stdout


def write_config(box: Container, emu: ThreadedEmulator, extra: str = "") -> None:
    """The rig's config.toml (root:appliance 0640, as install.sh makes it); `extra` goes
    under [behaviour]."""
    box.write(
        CONFIG,
        f"""# the test rig: the host's emulator, the FIFO microphone, the file speaker
[live]
endpoint = "{emu.base_url}"
ca_file = "/etc/appliance/emulator-ca.pem"
setup_timeout_s = 10

[audio]
capture_device = "rigmic"
playback_device = "rigspk"
volume = 100

[behaviour]
conversation_timeout_s = 10
{extra}""",
        mode=0o640,
    )
    box.run("chgrp", "appliance", CONFIG)


@pytest.fixture(scope="module")
def emulator() -> Iterator[ThreadedEmulator]:
    scenario = Scenario(
        default_reply=Reply(text=REPLY_TEXT, pcm=REPLY_PCM),
        think_ms=50,
        realtime_factor=1.0,  # the reply takes 1.5 s to arrive: polls see `speaking`
        use_espeak=False,
    )
    with ThreadedEmulator(scenario, api_key=KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def rig(box: Container, emulator: ThreadedEmulator) -> Container:
    """The box with the appliance installed, the rig's devices and the emulator configured."""
    box.run(*INSTALL, "--key-stdin", "--no-start", input=KEY, timeout=300)
    box.write("/etc/appliance/emulator-ca.pem", Path(emulator.ca_file).read_text())
    box.run("install", "-d", "-m", "0755", "-o", "appliance", "-g", "appliance", RIG)
    box.run("mkfifo", "-m", "0644", MIC_FIFO)
    box.write(
        f"{RIG}/asound.conf",
        nspawn.fifo_sound_card(MIC_FIFO, SPEAKER),
    )
    write_config(box, emulator)
    box.write(
        DROPIN,
        "[Service]\n"
        f"Environment=ALSA_CONFIG_PATH={RIG}/asound.conf\n"
        f"ReadWritePaths={RIG}\n"
        "WatchdogSec=3\n"
        "RestartSec=1\n",
    )
    box.write(FEEDER, Path(fifo_mic.__file__).read_text())
    box.run(
        "systemd-run", "--unit=rig-mic", "--quiet", "/usr/bin/python3", FEEDER, MIC_FIFO, SPEECH
    )
    box.run("systemctl", "daemon-reload")
    return box


def test_start_returns_once_ready(rig: Container) -> None:
    rig.run("systemctl", "start", "appliance")  # Type=notify: returns after READY=1
    props = show(rig, "ActiveState", "SubState", "StatusText", "User", "NRestarts")
    assert props == {
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "idle",
        "User": "appliance",
        "NRestarts": "0",
    }
    entries = journal(rig)
    ready = next(e for e in entries if str(e.get("MESSAGE", "")).startswith("ready: "))
    assert ready["APPLIANCE_STATE"] == "idle"
    assert ready["SYSLOG_IDENTIFIER"] == "appliance"
    assert "mic rigmic, speaker rigspk, control /run/appliance/control.sock" in ready["MESSAGE"]
    found = [e["MESSAGE"] for e in entries]
    assert "API key from systemd credential gemini-api-key" in found
    assert "capture device 'rigmic' open" in found


def test_a_typed_turn_is_spoken_and_printed(rig: Container, emulator: ThreadedEmulator) -> None:
    status = StatusLog(rig)
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(appliance, rig, "ask", "is the kettle on?")
        status.wait("speaking")
        status.wait("idle")
        printed = asked.result(timeout=60)
    assert printed == f"you: is the kettle on?\nassistant: {REPLY_TEXT}\n"
    assert status.seen[-2:] == ["speaking", "idle"]
    # Every byte of the reply reached the speaker, in order (volume 100: untouched).
    assert REPLY_PCM in rig.read_bytes(SPEAKER)
    # A typed turn opens no microphone: the session got text and no audio at all.
    (conn,) = emulator.connections
    assert emulator.received_audio(conn.id) == b""
    # The journal tells the story with structured fields, transcripts included.
    entries = journal(rig)
    said = next(e for e in entries if e.get("MESSAGE") == "user: is the kettle on?")
    assert (said["APPLIANCE_SESSION"], said["APPLIANCE_TURN"]) == ("1", "0")
    states = [e["APPLIANCE_STATE"] for e in entries if "APPLIANCE_STATE" in e]
    assert states[-4:] == ["connecting", "thinking", "speaking", "idle"]
    model = "".join(
        str(e["MESSAGE"]).removeprefix("model: ")
        for e in entries
        if str(e.get("MESSAGE", "")).startswith("model: ")
    )
    assert " ".join(model.split()) == REPLY_TEXT


def test_a_spoken_turn_through_the_paced_microphone(
    rig: Container, emulator: ThreadedEmulator
) -> None:
    speech = speech_16k()
    rig.write_bytes(SPEECH, speech)
    status = StatusLog(rig)
    appliance(rig, "talk")
    status.wait("listening")
    rig.run("systemctl", "kill", "--signal=SIGUSR1", "rig-mic")  # the user speaks
    status.wait("speaking")
    status.wait("listening")  # the reply has played: the mic is open again
    appliance(rig, "stop")
    status.wait("idle")
    assert status.seen == ["connecting", "listening", "speaking", "listening", "idle"] or (
        status.seen == ["listening", "speaking", "listening", "idle"]
    ), status.seen
    # What the user said left the device intact and in order (pre-roll, then live).
    conn = emulator.connections[-1]
    sent = emulator.received_audio(conn.id)
    assert speech in sent
    assert len(sent) > len(speech)  # plus the pre-roll and the quiet around it
    assert rig.read_bytes(SPEAKER).count(REPLY_PCM) == 2
    report = json.loads(appliance(rig, "status", "--json"))
    assert report["state"] == "idle"
    assert report["counters"]["turns"] == 2
    assert report["counters"]["conversations"] == 2
    # Mic audio still queued when the conversation ended is dropped, not sent later.
    assert len(sent) <= report["counters"]["mic_bytes_sent"] <= len(sent) + 10 * 640
    assert report["counters"]["capture_overruns"] == 0


def test_the_control_socket_is_for_root_and_the_appliance_group(rig: Container) -> None:
    rig.run("useradd", "--system", "--no-create-home", "--groups", "appliance", "pi")
    rig.run("useradd", "--system", "--no-create-home", "guest")
    as_user = ["setpriv", "--reuid", "{}", "--regid", "{}", "--init-groups"]

    def run_as(user: str, *args: str) -> Any:
        argv = [a.format(user) for a in as_user]
        return rig.run(*argv, APPLIANCE, *args, check=False)

    member = run_as("pi", "status")
    assert member.returncode == 0, member.stderr
    assert "state: idle" in member.stdout
    outsider = run_as("guest", "status", "--socket", "/run/appliance/control.sock")
    assert outsider.returncode == 69, outsider
    assert "permission denied" in outsider.stderr, outsider.stderr
    assert "must be in group 'appliance'" in outsider.stderr, outsider.stderr


def test_idle_service_does_not_spin(rig: Container) -> None:
    """The capture thread blocks on the paced FIFO: idle costs a sliver of one core."""
    assert show(rig, "StatusText")["StatusText"] == "idle"
    cpu0, t0 = rig.cpu_ns("appliance"), time.monotonic_ns()
    time.sleep(5)
    cpu1, t1 = rig.cpu_ns("appliance"), time.monotonic_ns()
    share = (cpu1 - cpu0) / (t1 - t0)
    print(f"idle appliance service: {share:.2%} of one core over {(t1 - t0) / 1e9:.1f} s")
    assert share < 0.2  # a spinning capture thread is ~100 %


def test_reload_with_a_bad_config_keeps_the_running_one(
    rig: Container, emulator: ThreadedEmulator
) -> None:
    pid = show(rig, "MainPID")["MainPID"]
    write_config(rig, emulator, extra='mode = "sideways"\n')
    rig.run("systemctl", "reload", "appliance")  # SIGHUP
    error = wait_until(
        "the reload error in the journal",
        lambda: [m for m in messages(rig) if m.startswith("config not reloaded")],
    )
    assert "behaviour.mode" in error[0] and CONFIG in error[0], error
    wait_until("the reload to end", lambda: show(rig, "SubState")["SubState"] == "running")
    props = show(rig, "ActiveState", "MainPID", "StatusText")
    assert props == {"ActiveState": "active", "MainPID": pid, "StatusText": "idle"}
    write_config(rig, emulator)
    rig.run("systemctl", "reload", "appliance")
    wait_until(
        "the good config to be reloaded",
        lambda: f"config reloaded from {CONFIG}" in messages(rig),
    )
    assert show(rig, "ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
    # Still answers after both reloads.
    assert appliance(rig, "ask", "still there?").endswith(f"assistant: {REPLY_TEXT}\n")


def test_the_api_key_never_reaches_the_journal(rig: Container) -> None:
    everything = rig.run("journalctl", "-o", "export", "--no-pager").stdout
    assert "API key from systemd credential" in everything  # the journal was read
    assert KEY not in everything
    assert KEY not in appliance(rig, "status", "--json")


def doctor_lines(output: str) -> dict[str, str]:
    """`appliance doctor`'s lines by check name."""
    lines = {}
    for line in output.splitlines():
        if line[:4] in ("pass", "FAIL", "skip"):
            lines[line[6:18].strip()] = line
    return lines


def test_doctor_in_the_booted_system_reports_the_service_and_its_key(rig: Container) -> None:
    """Root: every check runs. A member of the group appliance: `check` and `doctor` find
    the key install.sh stored for the service (they said "none found"), without reading it."""
    run = rig.run(APPLIANCE, "doctor", check=False)
    print(run.stdout)
    lines = doctor_lines(run.stdout)
    assert KEY not in run.stdout + run.stderr
    assert lines["service"].startswith(
        "pass  service     appliance.service is active (running); state idle"
    ), lines["service"]
    assert lines["api key"] == (
        "pass  api key     found: systemd credential gemini-api-key, from "
        "/etc/appliance/gemini-api-key (LoadCredential=)"
    )
    assert lines["state dir"] == (
        "pass  state dir   /var/lib/appliance belongs to appliance, mode 0750"
    )
    for name in ("config", "capture", "playback", "gpio", "camera", "dns", "tls", "endpoint"):
        assert lines[name].startswith("pass"), lines[name]
    assert "key accepted, model gemini-3.8-live served" in lines["live"], lines["live"]
    # The container shares the host's kernel clock; whatever it says decides the status.
    assert run.returncode == (0 if lines["clock"].startswith("pass") else 69), run.stdout

    if rig.run("getent", "passwd", "pi", check=False).returncode:
        rig.run("useradd", "--system", "--no-create-home", "--groups", "appliance", "pi")
    as_pi = ["setpriv", "--reuid", "pi", "--regid", "pi", "--init-groups", APPLIANCE]
    check = rig.run(*as_pi, "check", CONFIG, check=False)
    assert check.returncode == 0, check.stderr
    assert (
        "API key: from systemd credential gemini-api-key, from /etc/appliance/gemini-api-key "
        "(LoadCredential=); readable by root only (mode 0600), so not read here"
    ) in check.stdout.splitlines()
    mine = rig.run(*as_pi, "doctor", check=False)
    print(mine.stdout)
    lines = doctor_lines(mine.stdout)
    assert "readable by root only" in lines["api key"] and lines["api key"].startswith("pass")
    assert lines["live"].startswith(
        "skip  live        the key file is readable by root only (mode 0600)"
    )
    assert lines["live"].endswith("run `sudo appliance doctor` to try it")
    assert lines["service"].startswith("pass  service     appliance.service is active")
    assert lines["state dir"].startswith("skip")
    assert mine.returncode in (69, 77)


def test_stop_is_clean_and_nothing_was_restarted(rig: Container) -> None:
    pid = show(rig, "MainPID")["MainPID"]
    rig.run("systemctl", "stop", "appliance")
    props = show(rig, "ActiveState", "Result", "ExecMainStatus", "ExecMainPID", "NRestarts")
    # Result=success: exited 0 on SIGTERM within TimeoutStopSec (else `timeout`/`signal`);
    # NRestarts=0 with WatchdogSec=3: the loop never stalled for 3 s in this whole module.
    assert props == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "0",
        "ExecMainPID": pid,
        "NRestarts": "0",
    }
    assert any(m.startswith("stopped after ") for m in messages(rig))


def test_a_config_error_at_start_exits_78_and_is_not_restarted(
    rig: Container, emulator: ThreadedEmulator
) -> None:
    write_config(rig, emulator, extra='mode = "sideways"\n')
    start = rig.run("systemctl", "start", "appliance", check=False)
    assert start.returncode != 0
    wait_until("the failure", lambda: show(rig, "ActiveState")["ActiveState"] == "failed")
    time.sleep(2.5)  # RestartSec=1: a restart would have happened by now
    props = show(rig, "ActiveState", "NRestarts", "ExecMainStatus")
    assert props == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}
    log = rig.run("journalctl", "-u", "appliance", "--no-pager", "-n", "20").stdout
    assert "behaviour.mode" in log
