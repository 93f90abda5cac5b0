"""The appliance's configuration: typed models, TOML loading, errors a person can act on.

One file, `/etc/appliance/config.toml` on a device (the repository's `config.toml` is
that file, with every option and its default documented). It is read with `tomllib` and
validated into the frozen models below. Unknown keys are errors, because a typo that
passes silently (`capture_devise = ...`) is a setting the user believes is in force.
Every error names the file, the dotted key, the bad value and what is allowed.

The Gemini API key is deliberately not a config option: config files get pasted into
forums. It comes from systemd's credential directory, a key file, or the environment
(see `resolve_api_key`), and is held as a `SecretStr` so no `repr()` or log shows it.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from appliance.audio.echo import available as echo_available
from appliance.daemon.state import STATES
from appliance.hardware import boards
from appliance.live.models import DEFAULT_MODEL, rejected_options
from appliance.voice.wake import SHIPPED_MODELS as SHIPPED_WAKE_MODELS

DEFAULT_PATH = Path("/etc/appliance/config.toml")
"""Where the service reads its config; `--config` or `APPLIANCE_CONFIG` override it."""

API_KEY_CREDENTIAL = "gemini-api-key"
"""The credential name the unit file loads with `LoadCredential=`."""


LED_STATES: tuple[str, ...] = (*STATES, "limit", "camera")
"""The states the LEDs can show: the daemon's states (`appliance.daemon.state.STATES`)
and `camera`, shown on top while frames are being sent."""


class _Section(BaseModel):
    """Base of every section: frozen, unknown keys are errors, and a number is a number
    (pydantic's lax mode took `volume = true` for 1 % and `period_ms = "20"` for 20)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for name, value in data.items():
                field = cls.model_fields.get(str(name))
                if field is not None and isinstance(value, bool | str) and _numeric(field):
                    kind = "true or false" if isinstance(value, bool) else "a string"
                    raise PydanticCustomError(
                        "not_a_number",
                        "Input should be a number, not {kind}",
                        {"field": str(name), "kind": kind, "value": value},
                    )
        return data


def _numeric(field: Any) -> bool:
    """Whether a field takes a number (int or float, maybe None), not a bool."""
    kinds = get_args(field.annotation) or (field.annotation,)
    return any(kind in (int, float) for kind in kinds)


class LiveConfig(_Section):
    """`[live]`: which model to talk to, how, and where."""

    model: str = Field(DEFAULT_MODEL, min_length=1)
    voice: str = Field("Kore", min_length=1)
    language: str | None = None
    system_instruction: str = (
        "You are a helpful voice assistant on a small speaker in the user's home. "
        "Answer briefly and conversationally; your words are spoken aloud."
    )
    api_key_file: Path | None = None
    endpoint: str | None = None
    """Base URL override, e.g. `https://127.0.0.1:8443` for the local emulator."""
    ca_file: Path | None = None
    """Extra CA certificate (PEM) to trust for `endpoint`, e.g. the emulator's."""

    @model_validator(mode="after")
    def _ca_file_exists(self) -> LiveConfig:
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {str(self.ca_file)!r} does not exist (a PEM file)")
        return self

    api_version: str | None = None
    setup_timeout_s: float = Field(10.0, gt=0, le=120)
    reconnect_max_delay_s: float = Field(30.0, gt=0, le=3600)
    transcription: bool = True
    context_compression: bool = True
    session_resumption: bool = True
    google_search: bool = False
    affective_dialog: bool = False
    """Let the model adapt its tone to the user's (2.5 native audio only)."""
    proactive_audio: bool | None = None
    """false: the model answers only when addressed (2.5 native audio; always on for 3.8)."""

    @model_validator(mode="after")
    def _model_takes_options(self) -> LiveConfig:
        problems = rejected_options(
            self.model,
            affective_dialog=self.affective_dialog,
            proactive_audio=self.proactive_audio,
        )
        if problems:
            raise ValueError(
                "; ".join(problems) + f" (or choose another [live] model than {self.model!r})"
            )
        return self


class AudioConfig(_Section):
    """`[audio]`: ALSA devices and the audio path."""

    capture_device: str = Field("default", min_length=1)
    playback_device: str = Field("default", min_length=1)
    capture_channels: int = Field(1, ge=1, le=16)
    """How many channels to open the capture device with (a 2-mic HAT: 2)."""
    capture_channel: int = Field(0, ge=0, le=15)
    """Which of those channels is the microphone to use (0-based)."""
    period_ms: int = Field(20, ge=10, le=64)
    preroll_ms: int = Field(300, ge=0, le=5000)
    jitter_ms: int = Field(60, ge=0, le=1000)
    mic_gain_db: float = Field(0.0, ge=-20, le=40)
    volume: int = Field(80, ge=0, le=100)
    """Initial output volume in percent; changes made at run time persist in the state dir."""
    mixer: str | None = None
    """ALSA mixer control for the volume (e.g. `Speaker`); unset: software scaling."""
    mixer_card: str | None = None
    """Card of that mixer control (e.g. `seeed2micvoicec`); unset: the default card."""
    earcons: tuple[Literal["wake", "done", "error", "offline"], ...] = (
        "wake",
        "done",
        "error",
        "offline",
    )
    """Which short generated sounds to play; `[]` for none."""
    echo_cancel: bool = False
    """Take the speaker's own sound out of the microphone (WebRTC AEC3, on the device):
    with `behaviour.duplex = "full"` the user can talk over a reply; the wake word can
    interrupt one in either duplex. Off until measured on your board (boards that cancel
    echo in hardware do not need it)."""
    noise_suppression: bool = False
    """WebRTC noise suppression on the microphone (a fan, a fridge, traffic)."""
    auto_gain: bool = False
    """WebRTC automatic gain on the microphone (a quiet or far-away talker)."""

    @field_validator("capture_device", "playback_device")
    @classmethod
    def _printable_device(cls, name: str) -> str:
        """A NUL in a device name killed the capture thread while the daemon said idle."""
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(
                f"{name!r} has a control character; device names are printable text "
                "(list them with `arecord -L` and `aplay -L`)"
            )
        return name

    @field_validator("echo_cancel", "noise_suppression", "auto_gain")
    @classmethod
    def _dsp_available(cls, on: bool) -> bool:
        if on and (why := echo_available()):
            raise ValueError(f"{why}; or set it to false")
        return on

    @model_validator(mode="after")
    def _channel_in_range(self) -> AudioConfig:
        if self.capture_channel >= self.capture_channels:
            raise ValueError(
                f"capture_channel = {self.capture_channel} but capture_channels = "
                f"{self.capture_channels}: the channel index must be below the channel count"
            )
        return self


ButtonAction = Literal["talk", "stop", "mute", "none"]


class ButtonActions(_Section):
    """`[button.actions]`: what each gesture does (in `hold` mode, press/release talk)."""

    press: ButtonAction = "talk"
    double_press: ButtonAction = "stop"
    hold: ButtonAction = "mute"


class ButtonConfig(_Section):
    """`[button]`: one push button on a GPIO pin; no `pin` means no button."""

    pin: int | None = Field(None, ge=0, le=53)
    """BCM GPIO number."""
    pull_up: bool = True
    """True: the button connects the pin to ground (the usual wiring)."""
    bounce_ms: int = Field(20, ge=0, le=500)
    hold_s: float = Field(3.0, gt=0, le=30)
    double_press_ms: int = Field(400, ge=50, le=2000)
    actions: ButtonActions = ButtonActions()


LedPatternName = Literal["off", "on", "blink", "pulse"]


class LedPattern(_Section):
    """How one state looks: a pattern, a colour (RGB and APA102 only) and a level."""

    pattern: LedPatternName = "on"
    colour: str = Field("#ffffff", pattern=r"^#[0-9a-fA-F]{6}$")
    level: float = Field(1.0, ge=0, le=1)
    period_s: float = Field(1.0, gt=0, le=10)
    """Length of one blink or pulse cycle."""


def _default_led_patterns() -> dict[str, LedPattern]:
    """The field's habit: dim when idle, bright while listening, pulsing while speaking."""
    return {
        "idle": LedPattern(pattern="on", colour="#ffffff", level=0.05),
        "connecting": LedPattern(pattern="blink", colour="#0040ff", level=0.6, period_s=0.5),
        "listening": LedPattern(pattern="on", colour="#0080ff", level=1.0),
        "thinking": LedPattern(pattern="pulse", colour="#8000ff", level=0.8, period_s=0.6),
        "speaking": LedPattern(pattern="pulse", colour="#00ff40", level=1.0, period_s=1.2),
        "muted": LedPattern(pattern="on", colour="#ff8000", level=0.3),
        "offline": LedPattern(pattern="blink", colour="#ff8000", level=0.5, period_s=2.0),
        "error": LedPattern(pattern="blink", colour="#ff0000", level=1.0, period_s=0.4),
        "limit": LedPattern(pattern="blink", colour="#ffff00", level=0.6, period_s=1.0),
        "ringing": LedPattern(pattern="blink", colour="#ffc000", level=1.0, period_s=0.3),
        "camera": LedPattern(pattern="on", colour="#ff00ff", level=0.5),
    }


class LedsConfig(_Section):
    """`[leds]`: the driver and how each state looks (`[leds.states.NAME]`)."""

    driver: Literal["none", "led", "pwmled", "rgbled", "apa102"] = "none"
    pin: int | None = Field(None, ge=0, le=53)
    """The LED's BCM pin for `led` and `pwmled`."""
    red_pin: int | None = Field(None, ge=0, le=53)
    green_pin: int | None = Field(None, ge=0, le=53)
    blue_pin: int | None = Field(None, ge=0, le=53)
    active_high: bool = True
    count: int = Field(3, ge=1, le=255)
    """Number of APA102 LEDs."""
    spi_bus: int = Field(0, ge=0)
    spi_device: int = Field(1, ge=0)
    power_pin: int | None = Field(None, ge=0, le=53)
    """GPIO that switches the APA102 supply on (GPIO 12 on the ReSpeaker 2-mic HAT)."""
    brightness: float = Field(0.5, ge=0, le=1)
    """APA102 global brightness; single and RGB LEDs use each state's `level`."""
    fps: int = Field(30, ge=1, le=120)
    states: dict[str, LedPattern] = Field(default_factory=_default_led_patterns)

    @model_validator(mode="before")
    @classmethod
    def _merge_state_defaults(cls, data: Any) -> Any:
        """A user who sets `[leds.states.idle]` keeps the defaults of the other states."""
        if isinstance(data, Mapping) and isinstance(data.get("states"), Mapping):
            merged: dict[str, Any] = dict(_default_led_patterns())
            merged.update(data["states"])
            data = {**data, "states": merged}
        return data

    @model_validator(mode="after")
    def _check(self) -> LedsConfig:
        unknown = sorted(set(self.states) - set(LED_STATES))
        if unknown:
            raise ValueError(
                f"unknown LED state(s) {', '.join(unknown)}; allowed: {', '.join(LED_STATES)}"
            )
        if self.driver in ("led", "pwmled") and self.pin is None:
            raise ValueError(f"driver = {self.driver!r} needs `pin` (a BCM GPIO number)")
        if self.driver == "rgbled" and None in (self.red_pin, self.green_pin, self.blue_pin):
            raise ValueError("driver = 'rgbled' needs red_pin, green_pin and blue_pin")
        return self


class CameraConfig(_Section):
    """`[camera]`: optional picamera2 frames, only ever during a conversation."""

    enabled: bool = False
    mode: Literal["stream", "on_request"] = "on_request"
    max_fps: float = Field(1.0, gt=0, le=1)
    max_size: int = Field(768, ge=64, le=1024)
    """Longest side of a frame, in pixels."""
    jpeg_quality: int = Field(80, ge=10, le=95)
    media_resolution: Literal["low", "medium", "high"] = "low"
    """How the model reads each frame: low is 64 tokens a frame, medium and high 256 (on
    3.8 every frame sent is billed and kept in the context)."""


class BehaviourConfig(_Section):
    """`[behaviour]`: turn-taking, timeouts, echo handling, conversation memory."""

    mode: Literal["toggle", "hold"] = "toggle"
    conversation_timeout_s: float = Field(20.0, gt=0, le=3600)
    """In `toggle` mode, end the conversation after this long with nobody talking."""
    reply_timeout_s: float = Field(30.0, gt=0, le=600)
    """Give up (error chime) when the model has not started answering within this long."""
    duplex: Literal["half", "full"] = "half"
    """`half`: the mic is not sent while a reply plays (no echo canceller needed)."""
    half_duplex_tail_ms: int = Field(300, ge=0, le=3000)
    remember_s: float = Field(600.0, ge=0, le=7200)
    """Keep the session resumption handle this long after a conversation; 0 forgets."""
    tools: bool = True
    """Let the model call local functions (volume, time, stop, look)."""
    send_audio: Literal["speech", "all"] = "speech"
    """Toggle conversations: `speech` sends only what a local voice detector calls speech
    (with the moments around it); `all` streams the microphone until the conversation ends."""


class WakeConfig(_Section):
    """`[wake]`: start a conversation by saying a wake word (detected on the device)."""

    enabled: bool = False
    model: str = Field("okay_nabu", min_length=1)
    """A model shipped with pymicro-wakeword, or the path of a microWakeWord model's .json."""
    threshold: float | None = Field(None, gt=0, lt=1)
    """Detection score threshold; unset: the model's own (its `probability_cutoff`)."""
    refractory_s: float = Field(2.0, ge=0, le=60)
    """After a detection, ignore the wake word for this long."""

    @field_validator("model")
    @classmethod
    def _model_known(cls, model: str) -> str:
        if model in SHIPPED_WAKE_MODELS:
            return model
        path = Path(model)
        if path.suffix != ".json":
            shipped = ", ".join(SHIPPED_WAKE_MODELS)
            raise ValueError(f"not a shipped model ({shipped}) nor the path of a model's .json")
        if not path.is_file():
            raise ValueError("no such file")
        return model


class CostConfig(_Section):
    """`[cost]`: prices per million tokens and a daily limit (see `appliance.daemon.cost`)."""

    currency: str = Field("USD", min_length=1, max_length=8)
    audio_in: float = Field(3.00, ge=0)
    audio_out: float = Field(12.00, ge=0)
    text_in: float = Field(0.75, ge=0)
    """Also image and video input."""
    text_out: float = Field(4.50, ge=0)
    """Also thoughts."""
    daily_limit: float = Field(0.0, ge=0)
    """Once the day's conversations cost this much, no new one starts until local
    midnight (a press gets an earcon and the LEDs' `limit` look); 0: no limit."""


class TimersConfig(_Section):
    """`[timers]`: timers and alarms the model can set (see `appliance.timers`)."""

    enabled: bool = True
    """Declare the timer functions to the model and ring what is due."""
    ring_volume: int = Field(60, ge=0, le=100)
    """The ringing plays at the user's volume, but never below this percent."""
    ring_max_s: float = Field(300.0, ge=1, le=3600)
    """Ringing nobody silences stops after this long (then it is logged)."""


SOCKET_PATH_MAX = 107
"""Bytes in a Unix socket path (sun_path is 108 with the terminating NUL)."""


class ControlConfig(_Section):
    """`[control]`: the Unix socket that `appliance talk|stop|status|...` use."""

    socket: Path | None = None
    """Default: `$RUNTIME_DIRECTORY/control.sock`, else `/run/appliance/control.sock`."""
    group: str | None = None
    """Group that may use the socket (mode 0660); unset: the service's own group."""

    @field_validator("socket")
    @classmethod
    def _socket_path_usable(cls, socket: Path | None) -> Path | None:
        """Everything `run` would die on when it binds, said by `check` first."""
        if socket is None:
            return None
        text = str(socket)
        if "\x00" in text:
            raise ValueError("the path contains a NUL character")
        if not socket.is_absolute():
            raise ValueError("must be an absolute path, e.g. /run/appliance/control.sock")
        if len(os.fsencode(text)) > SOCKET_PATH_MAX:
            raise ValueError(
                f"{len(os.fsencode(text))} bytes long; a Unix socket path has at most "
                f"{SOCKET_PATH_MAX}: choose a shorter one"
            )
        ancestor = socket.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(f"its directory cannot be created: {ancestor} is not a directory")
        if os.geteuid() == 0 and not os.access(ancestor, os.W_OK | os.X_OK):
            raise ValueError(f"its directory cannot be created in {ancestor} (not writable)")
        return socket

    @field_validator("group")
    @classmethod
    def _group_exists(cls, group: str | None) -> str | None:
        if group is None:
            return None
        import grp

        try:
            grp.getgrnam(group)
        except KeyError:
            raise ValueError(
                f"no group {group!r} on this system (create it with `groupadd {group}`, or "
                "remove the key)"
            ) from None
        return group


MCP_PACKAGE = "mcp"
"""The MCP client library, an extra (`pip install 'appliance[mcp]'`): only devices that
name servers pay for it (memory, start-up)."""

_MCP_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,23}$"
_SECRET_KEYS = ("token", "access_token", "api_key", "password", "headers", "authorization")


class McpServerConfig(_Section):
    """`[[mcp.servers]]`: one MCP server whose tools the model may call.

    Either `url` (Streamable HTTP, e.g. Home Assistant's `http://HA:8123/api/mcp`) with a
    bearer token from `token_file` or the systemd credential `token_credential`, or
    `command` (a stdio server, run as the service's user). The token itself is never a
    config value: config files get pasted into forums.
    """

    name: str = Field(pattern=_MCP_NAME)
    """Prefixes the server's tool names for the model (`home_HassTurnOn`)."""
    url: str | None = Field(None, pattern=r"^https?://[^\s@/]+(/\S*)?$")
    token_file: Path | None = None
    token_credential: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """A name given to `LoadCredential=` in the unit; read from $CREDENTIALS_DIRECTORY."""
    command: tuple[str, ...] | None = Field(None, min_length=1)
    """argv of a stdio server, e.g. ["/usr/local/bin/my-mcp-server", "--flag"]."""
    allow: tuple[str, ...] | None = None
    """Only these tools (by the server's names); unset: all but `deny`."""
    deny: tuple[str, ...] = ()
    timeout_s: float = Field(10.0, gt=0, le=300)
    """Longest wait for one call's answer."""

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_here(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in _SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"{key}: a token is never written in config.toml (config files get "
                        "shared); put it alone in a file readable only by the service (e.g. "
                        "/etc/appliance/mcp-token, mode 0600) and name it with token_file, or "
                        "load it as a systemd credential (LoadCredential=NAME:/path in "
                        "`systemctl edit appliance`) and name it with token_credential"
                    )
        return data

    def describe(self) -> str:
        """One line for `appliance check` (never the token, only where it is)."""
        if self.command is not None:
            where = "stdio: " + " ".join(self.command)
        else:
            token = (
                f"token from file {self.token_file}"
                if self.token_file
                else f"token from systemd credential {self.token_credential}"
                if self.token_credential
                else "no token"
            )
            where = f"{self.url} ({token})"
        tools = f"; only {', '.join(self.allow)}" if self.allow is not None else ""
        tools += f"; never {', '.join(self.deny)}" if self.deny else ""
        return f"MCP server {self.name}: {where}{tools}"

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.url is None) == (self.command is None):
            raise ValueError(f"server {self.name!r}: give either url or command (not both)")
        if self.command is not None and (self.token_file or self.token_credential):
            raise ValueError(f"server {self.name!r}: a token goes with url, not command")
        if self.token_file is not None and self.token_credential is not None:
            raise ValueError(f"server {self.name!r}: token_file or token_credential, not both")
        if self.token_file is not None and not self.token_file.is_absolute():
            raise ValueError(f"server {self.name!r}: token_file must be an absolute path")
        if self.url is not None and "?" in self.url and "token" in self.url.lower():
            raise ValueError(
                f"server {self.name!r}: a token in the url would be logged and shared; use "
                "token_file or token_credential"
            )
        return self


class McpConfig(_Section):
    """`[mcp]`: MCP servers (Home Assistant, ...) whose tools the model may call."""

    servers: tuple[McpServerConfig, ...] = ()

    @model_validator(mode="after")
    def _usable(self) -> McpConfig:
        names = [server.name for server in self.servers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"servers: the name {twice[0]!r} is used twice; names are unique")
        if self.servers:
            import importlib.util

            if importlib.util.find_spec(MCP_PACKAGE) is None:
                raise ValueError(
                    f"servers: the {MCP_PACKAGE!r} package is not installed; install it with "
                    f"`/opt/appliance/venv/bin/pip install 'appliance[{MCP_PACKAGE}]'` (or "
                    f"`pip install {MCP_PACKAGE}`), or remove the [[mcp.servers]] entries"
                )
        return self


class LoggingConfig(_Section):
    """`[logging]`: level and what is logged."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    transcripts: bool = True


class Config(_Section):
    """The whole file. `board` fills pins and drivers before the sections are read."""

    board: str = "custom"
    live: LiveConfig = LiveConfig()
    audio: AudioConfig = AudioConfig()
    button: ButtonConfig = ButtonConfig()
    leds: LedsConfig = LedsConfig()
    camera: CameraConfig = CameraConfig()
    behaviour: BehaviourConfig = BehaviourConfig()
    wake: WakeConfig = WakeConfig()
    cost: CostConfig = CostConfig()
    timers: TimersConfig = TimersConfig()
    control: ControlConfig = ControlConfig()
    mcp: McpConfig = McpConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _wake_needs_toggle(self) -> Config:
        if self.wake.enabled and self.behaviour.mode == "hold":
            raise ValueError(
                "wake.enabled: the wake word starts toggle conversations; set behaviour.mode = "
                '"toggle" or wake.enabled = false'
            )
        return self


class ConfigError(Exception):
    """A config file that cannot be used. `problems` holds one line per problem."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def load(path: Path | str | None = None) -> Config:
    """Read and validate a config file; a missing default file means all defaults.

    Raises ConfigError naming the file and each bad key.
    """
    explicit = path is not None or "APPLIANCE_CONFIG" in os.environ
    file = Path(path or os.environ.get("APPLIANCE_CONFIG") or DEFAULT_PATH)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(file, ["no such file"]) from None
        return Config()
    except OSError as exc:
        raise ConfigError(file, [f"cannot read: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            file, [f"line {line}: not UTF-8 (byte {data[exc.start]:#04x}); save it as UTF-8"]
        ) from None
    return parse(text, file)


def parse(text: str, path: Path | str = "<config>") -> Config:
    """Validate TOML text; `path` is only used in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError(path, ["not valid TOML: arrays or tables nested too deeply"]) from None
    return from_dict(raw, path)


def from_dict(raw: Mapping[str, Any], path: Path | str = "<config>") -> Config:
    """Validate an already-parsed document, applying the board preset under it."""
    board = raw.get("board", "custom")
    if not isinstance(board, str) or board not in boards.PRESETS:
        raise ConfigError(
            path,
            [f"board: unknown board {board!r}; allowed: {', '.join(sorted(boards.PRESETS))}"],
        )
    merged = _deep_merge(boards.PRESETS[board], raw)
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(path, [_describe(err) for err in exc.errors()]) from None


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the key at `loc`, for 'did you mean' suggestions."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):  # an entry of an array of tables ([[mcp.servers]])
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if get_args(ann) and isinstance(get_args(ann)[0], type):
            ann = get_args(ann)[0]  # tuple[Entry, ...]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif model is LedsConfig and part == "states":
            model = LedPattern
        else:
            return None
    return model


def _key_text(part: object) -> str:
    """A key as written, quoted when it is not plain printable text (a "\\r" in a key
    split the one-line message in two)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _describe(err: Any) -> str:
    """One line for one pydantic error: `key: problem (got value)`."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = ".".join(_key_text(p) for p in loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc)
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
            allowed = ", ".join(model.model_fields)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {allowed}"
        return f"{key}: unknown key{hint}"
    if kind == "not_a_number":  # raised for the section, about one of its keys
        ctx = err["ctx"]
        return f"{key}.{ctx['field']}: {err['msg']} (got {ctx['value']!r})"
    message = str(err["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across sections names its keys itself
        return message
    value = err.get("input")
    if kind == "missing" or isinstance(value, Mapping):
        return f"{key}: {message}"
    return f"{key}: {message} (got {value!r})"


def resolve_api_key(config: Config, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The Gemini API key, or None when there is none (see `find_api_key`)."""
    found = find_api_key(config, environ)
    return found[0] if found else None


def find_api_key(
    config: Config, environ: Mapping[str, str] | None = None
) -> tuple[SecretStr, str] | None:
    """Find the Gemini API key and say where it came from; first hit wins.

    1. systemd credential `$CREDENTIALS_DIRECTORY/gemini-api-key` (`LoadCredential=`),
    2. the file named by `[live] api_key_file`,
    3. the `GEMINI_API_KEY` environment variable.
    An empty file or variable counts as none. The source is safe to print; the key is not.
    """
    env = os.environ if environ is None else environ
    if env.get("CREDENTIALS_DIRECTORY"):
        credential = Path(env["CREDENTIALS_DIRECTORY"]) / API_KEY_CREDENTIAL
        if credential.is_file():
            key = _read_key(credential)
            if key is not None:
                return key, f"systemd credential {API_KEY_CREDENTIAL}"
    if config.live.api_key_file is not None:
        file = config.live.api_key_file
        if not file.is_file():
            raise ConfigError(
                file, ["no such file; [live] api_key_file names it as the API key file"]
            )
        key = _read_key(file)
        if key is not None:
            return key, f"file {file}"
    value = env.get("GEMINI_API_KEY", "").strip()
    if not value:
        return None
    return _checked(
        value, "environment variable GEMINI_API_KEY"
    ), "environment variable GEMINI_API_KEY"


MIN_KEY_LENGTH = 8
"""Gemini API keys are 39 characters; anything this short is a placeholder or a typo."""


def _checked(value: str, source: str | Path) -> SecretStr:
    if len(value) < MIN_KEY_LENGTH or any(c.isspace() for c in value):
        raise ConfigError(
            source,
            [
                "this is not a Gemini API key (too short or with spaces); put the key from "
                "https://aistudio.google.com/apikey there, on one line"
            ],
        )
    return SecretStr(value)


def _read_key(file: Path) -> SecretStr | None:
    try:
        value = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(file, [f"cannot read the API key file: {exc.strerror}"]) from None
    return _checked(value, file) if value else None
