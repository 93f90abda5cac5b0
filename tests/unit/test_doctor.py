"""Each doctor check's logic, with fakes for what it asks (devices, systemd, the SDK)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from appliance import config, service_key
from appliance.audio.devices import DeviceBusyError, DeviceMissingError, PcmSpec
from appliance.doctor import audio, camera, clock, gpio, key, live, network, service, state_dir
from appliance.doctor.config_check import check_config
from appliance.doctor.result import (
    EX_CONFIG,
    EX_NOPERM,
    EX_OK,
    EX_UNAVAILABLE,
    Status,
    exit_code,
    failed,
    passed,
    skipped,
)
from appliance.live.errors import KEY_HELP, LiveFatalError, LiveUnavailableError

CFG = config.Config()


# --- results and the exit status ---------------------------------------------------------


def test_exit_status_is_zero_only_when_every_check_passed() -> None:
    ok = passed("a", "fine")
    assert exit_code([ok, ok]) == EX_OK
    assert exit_code([ok, skipped("b", "not root")]) == EX_NOPERM
    assert exit_code([ok, skipped("b", "x"), failed("c", "broken", "mend")]) == EX_UNAVAILABLE
    assert exit_code([failed("config", "bad", "edit"), failed("c", "x", "y")]) == EX_CONFIG


def test_one_line_per_check_with_the_fix_for_a_failure_only() -> None:
    assert passed("dns", "resolves").line() == "pass  dns         resolves"
    line = failed("capture", "'hw:9' is not available", "set audio.capture_device").line()
    assert line == "FAIL  capture     'hw:9' is not available; fix: set audio.capture_device"
    assert "\n" not in line
    assert skipped("gpio", "no access", "run with sudo").line().endswith("no access; run with sudo")


# --- config and key ----------------------------------------------------------------------


def test_config_check_names_the_file_and_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('board = "aiy-voice-v1"\n')
    result, cfg = check_config(good)
    assert result.status is Status.PASS and cfg is not None
    assert "board aiy-voice-v1" in result.message
    bad = tmp_path / "bad.toml"
    bad.write_text("[audio]\ncapture_devise = 'x'\n")
    result, cfg = check_config(bad)
    assert cfg is None and result.status is Status.FAIL
    assert f"{bad}: audio.capture_devise: unknown key" in result.message
    assert "appliance check" in result.fix


def test_key_check_says_where_never_what() -> None:
    secret = "AIzaSy-doctor-secret-0123456789"
    place = service_key.KeyLocation("file /etc/k", SecretStr(secret))
    result, found = key.check_key(CFG, lambda cfg: place)
    assert result.status is Status.PASS and found is place
    assert result.message == "found: file /etc/k" and secret not in result.line()
    result, found = key.check_key(CFG, lambda cfg: None)
    assert result.status is Status.FAIL and found is None
    assert "--key-stdin" in result.fix

    def placeholder(cfg: config.Config) -> None:
        raise config.ConfigError("/etc/k", ["this is not a Gemini API key"])

    result, _ = key.check_key(CFG, placeholder)
    assert result.status is Status.FAIL and "/etc/k: this is not a Gemini API key" in result.message


# --- where the service's key is (the `check` defect) ---------------------------------------


def unit_dirs(tmp_path: Path, unit: str, *dropins: str) -> tuple[Path, ...]:
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    lib.mkdir(parents=True)
    (lib / "appliance.service").write_text(unit)
    if dropins:
        (etc / "appliance.service.d").mkdir(parents=True)
        for i, text in enumerate(dropins):
            (etc / "appliance.service.d" / f"{i}.conf").write_text(text)
    return (etc, lib)


def test_the_credential_file_comes_from_the_unit_and_its_dropins(tmp_path: Path) -> None:
    unit = "[Service]\nLoadCredential=gemini-api-key:/etc/appliance/gemini-api-key\n"
    dirs = unit_dirs(tmp_path, unit)
    assert service_key._from_unit_files("appliance.service", dirs) == [
        "gemini-api-key:/etc/appliance/gemini-api-key"
    ]
    moved = unit_dirs(
        tmp_path / "b", unit, "[Service]\nLoadCredential=\nLoadCredential=gemini-api-key:/k\n"
    )
    assert service_key._from_unit_files("appliance.service", moved) == ["gemini-api-key:/k"]


def test_check_finds_the_key_install_sh_stored_for_the_service(tmp_path: Path) -> None:
    stored = tmp_path / "gemini-api-key"
    stored.write_text("AIzaSy-stored-by-install-0123456789\n")
    found = service_key.locate(CFG, {}, service_credential=stored)
    assert found is not None and found.key is not None
    assert found.key.get_secret_value() == "AIzaSy-stored-by-install-0123456789"
    assert found.describe() == (
        f"systemd credential gemini-api-key, from {stored} (LoadCredential=)"
    )
    # The service's credential wins over this shell's variable, as in the service.
    env = {"GEMINI_API_KEY": "AIzaSy-from-the-shell-99999"}
    again = service_key.locate(CFG, env, service_credential=stored)
    assert again is not None and again.source == found.source
    stored.unlink()
    shell = service_key.locate(CFG, env, service_credential=stored)
    assert shell is not None
    assert shell.source == (
        "environment variable GEMINI_API_KEY (this shell's: the service does not see it)"
    )


def test_a_root_only_key_is_found_and_said_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = tmp_path / "gemini-api-key"
    stored.write_text("AIzaSy-stored-by-install-0123456789\n")
    stored.chmod(0o600)
    monkeypatch.setattr(service_key.os, "access", lambda path, mode: False)  # not root
    found = service_key.locate(CFG, {}, service_credential=stored)
    assert found is not None and found.key is None
    owner = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    assert found.describe().endswith(f"readable by {owner} only (mode 0600), so not read here")


def test_inside_the_service_the_credentials_directory_is_the_truth(tmp_path: Path) -> None:
    (tmp_path / "gemini-api-key").write_text("AIzaSy-credential-0123456789")
    found = service_key.locate(CFG, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert found is not None and found.source == "systemd credential gemini-api-key"


# --- service, state dir, clock --------------------------------------------------------------


def fake_show(**props: str) -> service.Shower:
    return lambda unit, names: dict(props)


def test_service_active_and_idle_passes_with_its_state() -> None:
    show = fake_show(LoadState="loaded", ActiveState="active", SubState="running", User="appliance")
    result, info = service.check_service(
        Path("/run/x.sock"), show, lambda path: {"state": "idle", "last_error": None}
    )
    assert result.status is Status.PASS and info.active and info.user == "appliance"
    assert result.message == "appliance.service is active (running); state idle, no error"


def test_service_with_an_error_or_stopped_fails_with_the_journal_to_read() -> None:
    show = fake_show(LoadState="loaded", ActiveState="active", SubState="running")
    result, _ = service.check_service(
        Path("/x"), show, lambda p: {"state": "error", "last_error": "the key was refused"}
    )
    assert result.status is Status.FAIL and "the key was refused" in result.message
    show = fake_show(
        LoadState="loaded", ActiveState="failed", SubState="failed", ExecMainStatus="78",
        Result="exit-code",
    )  # fmt: skip
    result, info = service.check_service(Path("/x"), show, lambda p: {})
    assert result.status is Status.FAIL and not info.active
    assert "exit 78: a config error" in result.message
    assert "journalctl -u appliance" in result.fix


def test_service_not_installed_or_no_systemd_is_skipped() -> None:
    result, _ = service.check_service(Path("/x"), fake_show(LoadState="not-found"), lambda p: {})
    assert result.status is Status.SKIP and "not installed" in result.message
    result, _ = service.check_service(Path("/x"), lambda u, p: None, lambda p: {})
    assert result.status is Status.SKIP and "systemd is not running" in result.message


def test_service_status_socket_for_root_only_still_passes(tmp_path: Path) -> None:
    def denied(path: Path) -> dict[str, Any]:
        raise PermissionError(path)

    show = fake_show(LoadState="loaded", ActiveState="active", SubState="running")
    result, info = service.check_service(tmp_path / "s", show, denied)
    assert result.status is Status.PASS and "not asked" in result.message and info.active


def test_state_dir(tmp_path: Path) -> None:
    me = os.geteuid()
    assert state_dir.check_state_dir(tmp_path, None, euid=me).status is Status.PASS
    missing = tmp_path / "nope"
    assert state_dir.check_state_dir(missing, "appliance", euid=me).status is Status.PASS
    result = state_dir.check_state_dir(missing, None, euid=me, installed=False)
    assert result.status is Status.FAIL and "install -d" in result.fix
    result = state_dir.check_state_dir(tmp_path, None, euid=me + 4242)
    assert result.status is Status.SKIP and "sudo appliance doctor" in result.fix
    assert state_dir.state_dir({"STATE_DIRECTORY": "/var/lib/a:/x"}) == Path("/var/lib/a")


def test_clock() -> None:
    assert clock.check_clock(lambda: 0).status is Status.PASS
    result = clock.check_clock(lambda: clock.TIME_ERROR)
    assert result.status is Status.FAIL and "adjtimex" in result.message
    assert "timedatectl set-ntp true" in result.fix

    def no_adjtimex() -> int:
        raise OSError(1, "EPERM")

    assert clock.check_clock(no_adjtimex).status is Status.SKIP
    assert clock.kernel_clock_state() in range(6)  # the real call answers a clock state


# --- audio ------------------------------------------------------------------------------


class FakePcm:
    def __init__(self, samples: bytes = b"") -> None:
        self.samples = samples
        self.written = b""
        self.closed = False

    def read(self) -> tuple[int, bytes]:
        chunk, self.samples = self.samples[:640], self.samples[640:]
        return len(chunk) // 2, chunk

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data) // 2

    def close(self) -> None:
        self.closed = True


def test_devices_open_at_the_daemons_rates() -> None:
    seen: list[PcmSpec] = []

    def opener(spec: PcmSpec) -> FakePcm:
        seen.append(spec)
        return FakePcm()

    cfg = config.AudioConfig(capture_device="hw:1", capture_channels=2, playback_device="spk")
    assert audio.check_device(cfg, "capture", opener=opener).status is Status.PASS
    assert audio.check_device(cfg, "playback", opener=opener).status is Status.PASS
    assert [(s.device, s.rate, s.channels) for s in seen] == [("hw:1", 16000, 2), ("spk", 24000, 1)]


def test_a_missing_device_fails_naming_it_and_listing_what_exists() -> None:
    def opener(spec: PcmSpec) -> FakePcm:
        raise DeviceMissingError(spec.device, spec.direction, "No such device")

    cfg = config.AudioConfig(capture_device="hw:CARD=gone")
    names = [f"plughw:CARD=c{i},DEV=0" for i in range(10)]
    result = audio.check_device(cfg, "capture", opener=opener, lister=lambda d: names)
    assert result.status is Status.FAIL
    assert result.message.startswith("'hw:CARD=gone' is not available (No such device)")
    assert "plughw:CARD=c0,DEV=0" in result.message and result.message.endswith(", ...")
    assert result.fix == (
        "set audio.capture_device to one of them (`arecord -L` lists them with descriptions)"
    )


def test_a_busy_device_is_the_services_while_it_runs() -> None:
    def opener(spec: PcmSpec) -> FakePcm:
        raise DeviceBusyError(spec.device, spec.direction, "Device or resource busy")

    cfg = config.AudioConfig()
    held = audio.check_device(cfg, "playback", service_active=True, opener=opener)
    assert held.status is Status.SKIP and "systemctl stop appliance" in held.fix
    other = audio.check_device(cfg, "playback", service_active=False, opener=opener)
    assert other.status is Status.FAIL and "fuser" in other.fix


def test_recording_level_in_dbfs_and_silence_fails() -> None:
    half = (16384).to_bytes(2, "little", signed=True) * 32000  # constant half scale: -6 dBFS
    cfg = config.AudioConfig()
    result = audio.record_test(cfg, seconds=1.0, opener=lambda spec: FakePcm(half))
    assert result.status is Status.PASS
    assert "level -6.0 dBFS RMS, peak -6.0 dBFS" in result.message
    silent = audio.record_test(cfg, seconds=1.0, opener=lambda spec: FakePcm(bytes(64000)))
    assert silent.status is Status.FAIL and "digital silence" in silent.message


def test_the_tone_is_written_whole() -> None:
    pcm = FakePcm()
    result = audio.play_test(config.AudioConfig(), opener=lambda spec: pcm)
    assert result.status is Status.PASS and pcm.closed
    assert pcm.written.startswith(audio.tone())
    rms, _ = audio.dbfs(__import__("array").array("h", audio.tone()))
    assert -16 < rms < -14  # a -12 dBFS peak sine is -15 dBFS RMS


# --- gpio and camera ----------------------------------------------------------------------


def test_gpio_claims_each_pin_and_names_the_busy_one() -> None:
    cfg = config.from_dict({"board": "aiy-voice-v1"})
    claimed: list[int] = []
    assert gpio.check_gpio(cfg, claim=claimed.append).status is Status.PASS
    assert claimed == [23, 25]

    def busy(pin: int) -> None:
        if pin == 23:
            raise RuntimeError("GPIO busy")

    result = gpio.check_gpio(cfg, claim=busy)
    assert result.status is Status.FAIL
    assert result.message == "GPIO 23 (pin 16) for the button (GPIO busy)"
    assert "gpioinfo" in result.fix
    assert gpio.check_gpio(cfg, claim=busy, service_active=True).status is Status.SKIP
    assert gpio.check_gpio(CFG, claim=busy).message == "no GPIO pins configured"


def test_gpio_apa102_opens_spidev_and_does_not_claim_spi_pins(tmp_path: Path) -> None:
    cfg = config.from_dict({"board": "respeaker-2mic"})
    claimed: list[int] = []
    result = gpio.check_gpio(cfg, claim=claimed.append, dev=tmp_path)
    assert claimed == [17, 12]  # button and LED power; not MOSI/SCLK/CE1
    assert result.status is Status.FAIL and f"{tmp_path}/spidev0.1" in result.message
    assert "spi" in result.fix
    (tmp_path / "spidev0.1").write_bytes(b"")
    assert gpio.check_gpio(cfg, claim=claimed.append, dev=tmp_path).status is Status.PASS


def test_camera() -> None:
    assert camera.check_camera(config.CameraConfig()).status is Status.PASS
    on = config.CameraConfig(enabled=True)
    result = camera.check_camera(on, lambda: [{"Model": "imx708"}])
    assert result.status is Status.PASS and "imx708" in result.message
    none = camera.check_camera(on, lambda: [])
    assert none.status is Status.FAIL and "rpicam-hello --list-cameras" in none.fix


# --- network and the Live connect -----------------------------------------------------------


def test_network_target_and_an_address_needs_no_lookup() -> None:
    t = network.target(config.LiveConfig())
    assert (t.host, t.port) == ("generativelanguage.googleapis.com", 443)
    assert t.path.endswith("v1beta.GenerativeService.BidiGenerateContent")
    local = network.target(config.LiveConfig(endpoint="https://127.0.0.1:8443"))
    assert network.check_dns(local).message == "127.0.0.1 is an address: nothing to look up"


def test_live_failures_get_the_fix_for_their_cause() -> None:
    cfg = config.LiveConfig()

    def refused(error: Exception) -> live.Connector:
        async def connect(c: config.LiveConfig, k: SecretStr) -> None:
            raise error

        return connect

    key_error = LiveFatalError(f"the Live API rejected the API key (bad): {KEY_HELP}", 1007)
    result = live.check_live(cfg, SecretStr("k" * 20), "file /k", refused(key_error))
    assert result.status is Status.FAIL
    assert result.message == "the Live API rejected the API key (bad)"
    assert result.fix.startswith("the key in file /k is not accepted")
    model = LiveFatalError("the Live API does not serve model 'x' (1008: gone)", 1008)
    result = live.check_live(cfg, SecretStr("k" * 20), "f", refused(model))
    assert "[live] model" in result.fix
    down = LiveUnavailableError("gave up after 1 attempts: cannot reach the Live API")
    result = live.check_live(cfg, SecretStr("k" * 20), "f", refused(down))
    assert result.message == "cannot reach the Live API"

    async def fine(c: config.LiveConfig, k: SecretStr) -> None:
        return None

    ok = live.check_live(cfg, SecretStr("k" * 20), "f", fine)
    assert ok.status is Status.PASS and "model gemini-3.8-live served" in ok.message


def test_the_runner_stops_at_an_invalid_config(tmp_path: Path) -> None:
    from appliance.doctor.runner import Options, run_doctor

    bad = tmp_path / "bad.toml"
    bad.write_text("[audio]\nvolume = true\n")
    out = io.StringIO()
    assert run_doctor(Options(bad, out=out)) == EX_CONFIG
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("FAIL  config") and "audio.volume" in lines[0]


def test_the_services_environment_is_read_for_the_device_checks() -> None:
    show = fake_show(
        LoadState="loaded",
        ActiveState="active",
        SubState="running",
        Environment='ALSA_CONFIG_PATH=/srv/rig/asound.conf "X=two words"',
    )
    _, info = service.check_service(Path("/x"), show, lambda p: {"state": "idle"})
    assert info.environment == {"ALSA_CONFIG_PATH": "/srv/rig/asound.conf", "X": "two words"}


def test_gpio_through_gpiozero_names_a_pin_another_device_holds() -> None:
    from gpiozero import Button

    from tests.rig.gpio import mock_pins

    cfg = config.from_dict({"board": "aiy-voice-v1"})
    with mock_pins():
        assert gpio.check_gpio(cfg).message == "free: GPIO 23 (pin 16), GPIO 25 (pin 22)"
        holder = Button(23)
        try:
            result = gpio.check_gpio(cfg)
        finally:
            holder.close()
        assert result.status is Status.FAIL
        assert result.message.startswith("GPIO 23 (pin 16) for the button (")
        assert gpio.check_gpio(cfg).status is Status.PASS
