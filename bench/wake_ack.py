"""Wake word acknowledgement time through the real stack (not a test: it reports numbers).

    .venv/bin/python bench/wake_ack.py [--trials 20] [--gap-s 3] [--earcons wake,done,error]
        [--json FILE] [--log FILE]

The goal (the wake word issue): a wake-word detection is acknowledged, earcon and LED,
within 100 ms of the detection.

The stack, as tests/integration/daemon/test_wake_e2e.py runs it: the real daemon
(`appliance.daemon.app.Appliance`, started by tests/rig/appliance.py's
`running_appliance`) with `[wake] enabled = true` (okay_nabu, its own threshold) on the
paced JACK dummy rig (tests/rig/jack.py: a private server, the `rig` client in its own
process, ALSA `rigmic` / `rigspk` through the jack plugin, 48 kHz, 10 ms blocks), the
Live emulator over TLS through the real google-genai SDK, gpiozero mock pins. Config:
the rig's, plus `[audio] earcons = ["wake", "done", "error"]` (so the wake earcon
plays), `[leds] driver = "pwmled"` on a mock pin (so the LED animation thread runs and
draws), `[behaviour] conversation_timeout_s = 2`. Everything else is the default: half
duplex, `send_audio = "speech"`, 2 s refractory. The emulator answers every turn with
0.6 s of a 610 Hz tone (think time 50 ms, twice real time).

Each trial (one daemon for all of them): the daemon has been idle for `--gap-s`; the
room is digital silence; the rig's speaker recording is restarted, the rig says "okay
nabu, what's the time?" (espeak-ng en-us, 160 wpm, after 50 ms of silence: the rig
drops the part of a signal before the first JACK block boundary), the daemon goes
connecting -> listening -> speaking -> listening, and the 2 s silence timeout ends the
conversation (idle). The next trial starts once the daemon has been idle for
3 s and then `--gap-s` (longer than the 2 s refractory time, the "done" earcon and the
half-duplex tail; the capture ring holds quiet room again).

Measured per detection (all on CLOCK_MONOTONIC, ns; the `Detection` is the first one
the listener reported after the phrase began, which the daemon took, i.e. what
`app.hands_free.last_detection` then held):

- detected: `Detection.detected_ns`, the capture stamp of the period that completed the
  wake word (its score passed the threshold);
- reported: `Detection.reported_ns`, when the capture thread handed the detection to
  the event loop (`call_soon_threadsafe`). detected -> reported includes the idle
  capture batching: while idle, the capture thread reads 5 periods at a time, so the
  period that completed the wake word may wait up to 80 ms for the rest of its batch;
- LED show: `app.leds.show("connecting")` was called (wrapped; the event loop, right
  after the state machine's transition idle -> connecting);
- LED drawn: the LED animation thread's first frame of the `connecting` look handed to
  the driver (`app.leds._driver.render`, wrapped): the mock PWM pin is set then;
- earcon: the first sample of the wake earcon at the rig's speaker port (`spk`). The
  rig records the speaker in JACK blocks stamped with their JACK frame; the first block
  with new sound after the recording restart (`rig.sound_frames()`'s rule: not silent,
  not a repeat of the block before), and in it the first sample over 1e-4, gives the
  frame. JACK frames are mapped to monotonic time by two pairs (`rig.frame_time` read
  between two `time.monotonic_ns()` calls, the tightest round trip of five), one just
  before the phrase is played and one after idle, interpolated linearly (the dummy
  backend's clock runs at its own rate: the fitted ppm is reported).
- wake word end: where the wake phrase ends in the played audio (the start of the pause
  after "okay nabu", bench/wake_accuracy.py's `wake_end` rule), as a JACK frame mapped
  the same way: the user's view ("I stopped saying the wake word -> it answered").

Reported (median and max over the trials): detected -> reported, reported -> LED show,
reported -> LED drawn, reported -> earcon, detected -> LED show, detected -> earcon, and
for context wake word end -> detected and wake word end -> earcon. Where the earcon's
time goes: reported -> the earcon queued to the playback (`Playback.stamps
.receive_to_write`: queued -> first frame written to ALSA), written -> heard at the JACK
port, and how long `LiveSession.open()` took (it runs in the same transition as
the earcon action, before the earcon's task can start).

Also counted: detections after the phrase's own, until the daemon has been idle for 3 s
(every detection the listener reports, from `WakeListener._on_detect`, and whether the
daemon took it or ignored it because the speaker was playing). Only digital silence
follows the phrase, so any later detection came from no sound at all. `--earcons`
changes `[audio] earcons` (default "wake,done,error").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

from tests.rig.clock import clock_pair, frame_to_ns  # noqa: E402

RATE = 48_000
PHRASE = "okay nabu, what's the time?"
WAKE_ALONE = "okay nabu"
VOICE, WPM = "en-us", 160
LEAD_S = 0.05
SOUND = 1e-4  # a speaker sample over this is sound (the rig's sound_frames threshold)
GOAL_MS = 100.0
LED_PIN = 25


# --- the JACK clock ----------------------------------------------------------------------


def first_sound(frames: Any, blocks: Any, after_frame: float) -> int | None:
    """JACK frame of the first sample over SOUND in the first block of new sound that
    ends after `after_frame` (a block identical to the one before is the jack plugin
    repeating itself, not sound)."""
    if not len(blocks):
        return None
    loud = np.abs(blocks).max(axis=1) > SOUND
    repeat = np.zeros(len(blocks), dtype=bool)
    repeat[1:] = np.all(blocks[1:] == blocks[:-1], axis=1)
    block = blocks.shape[1]
    for i in np.nonzero(loud & ~repeat)[0]:
        if frames[i] + block <= after_frame:
            continue
        k = int(np.argmax(np.abs(blocks[i]) > SOUND))
        return int(frames[i]) + k
    return None


# --- the sound ---------------------------------------------------------------------------


def make_phrase() -> tuple[Any, int]:
    """The played signal (48 kHz float32) and the sample where the wake word ends in it."""
    from wake_accuracy import wake_end

    from tests.rig.sounds import espeak_48k, sequence, silence

    phrase = espeak_48k(PHRASE, VOICE, WPM)
    alone = espeak_48k(WAKE_ALONE, VOICE, WPM)
    # wake_end works on 16 kHz int16-scaled audio (10 ms frames of 160 samples).
    end16, _, _ = wake_end(phrase[::3] * 32768, alone[::3] * 32768)
    signal = sequence(silence(LEAD_S), phrase, silence(0.5))
    return signal, round(LEAD_S * RATE) + 3 * end16


# --- one daemon, N wake words ----------------------------------------------------------


class Stamps:
    """Monotonic stamps of the LED calls, from the event loop and the LED thread."""

    def __init__(self) -> None:
        self.shows: list[tuple[str, int]] = []
        self.renders: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def wrap(self, leds: Any) -> None:
        show, driver = leds.show, leds._driver
        render = driver.render

        def shown(state: str) -> None:
            t = time.monotonic_ns()
            show(state)
            with self._lock:
                self.shows.append((state, t))

        def rendered(shades: Any) -> None:
            render(shades)
            t = time.monotonic_ns()
            with self._lock:
                self.renders.append((leds.state, t))

        leds.show = shown
        driver.render = rendered

    def wrap_session(self, app: Any) -> None:
        """Time `LiveSession.open` (synchronous, in the same transition as the
        earcon: the earcon's task can only run after it)."""
        self.sessions: list[tuple[int, int]] = []
        open_session = app.session.open

        def opened() -> None:
            t0 = time.monotonic_ns()
            open_session()
            self.sessions.append((t0, time.monotonic_ns()))

        app.session.open = opened

    def wrap_detections(self, app: Any) -> None:
        """Every detection the listener reports (`WakeListener._on_detect`), and whether
        the daemon took it (`HandsFree._detected` set `last_detection`) or ignored it
        (the speaker was playing, half duplex)."""
        self.detections: list[tuple[Any, bool]] = []
        hands_free = app.hands_free
        listener = hands_free.wake
        on_detect = listener._on_detect

        def detected(detection: Any) -> None:
            on_detect(detection)
            self.detections.append((detection, hands_free.last_detection is detection))

        listener._on_detect = detected

    def first(self, kind: str, state: str, after_ns: int) -> int | None:
        with self._lock:
            rows = list(self.shows if kind == "show" else self.renders)
        return next((t for s, t in rows if s == state and t >= after_ns), None)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from gpiozero import Device

    from appliance.live.emulator import Emulator, Reply, Scenario
    from tests.rig.appliance import running_appliance
    from tests.rig.emulator import tone
    from tests.rig.gpio import mock_pins
    from tests.rig.jack import JackAudio, jack_available, jack_rig, rig_alsa_config

    why = jack_available()
    if why:
        raise SystemExit(f"cannot run: {why}")
    signal, wake_end_sample = make_phrase()
    scenario = Scenario(
        think_ms=50, realtime_factor=2.0, use_espeak=False, default_reply=Reply(pcm=tone(610, 600))
    )
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (server, rig), mock_pins():
        os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp) / "alsa").write())
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        jack = JackAudio(server, rig, Path(os.environ["ALSA_CONFIG_PATH"]))
        await asyncio.to_thread(jack.reset)
        async with (
            Emulator(scenario) as emu,
            running_appliance(
                jack,
                emu,
                Path(tmp),
                wake={"enabled": True},
                audio={"earcons": args.earcons.split(",") if args.earcons else []},
                behaviour={"conversation_timeout_s": 2},
                leds={"driver": "pwmled", "pin": LED_PIN},
            ) as r,
        ):
            app = r.app
            stamps = Stamps()
            stamps.wrap(app.leds)
            stamps.wrap_session(app)
            stamps.wrap_detections(app)
            for n in range(1, args.trials + 1):
                # Idle and quiet for `gap_s` (the ring and the detector hear the room;
                # a conversation the daemon started on its own ends first).
                await settle(r, args.gap_s)
                trial = await one_trial(r, rig, signal, wake_end_sample, stamps)
                trial["n"] = n
                trials.append(trial)
                print(
                    f"trial {n}: "
                    + ", ".join(f"{k} {v}" for k, v in trial.items() if k.endswith("_ms"))
                    + f", later detections {trial['later_detections']}"
                    + (f" ERRORS {trial['errors']}" if trial["errors"] else ""),
                    flush=True,
                )
            status = app.status()
        Device.pin_factory.reset()
    return {
        "trials": trials,
        "summary": summarise(trials),
        "wake_status": status.get("wake"),
        "counters": status.get("counters"),
    }


async def settle(r: Any, gap_s: float) -> None:
    """Wait until the daemon is idle and has stayed idle for `gap_s`."""
    while True:
        if r.states[-1] != "idle":
            await r.wait_state("idle", 60, after=len(r.states) - 1)
        seen = len(r.states)
        await asyncio.sleep(gap_s)
        if len(r.states) == seen and r.states[-1] == "idle":
            return


async def one_trial(
    r: Any, rig: Any, signal: Any, wake_end_sample: int, stamps: Stamps
) -> dict[str, Any]:
    app = r.app
    errors: list[str] = []
    underruns = app.status()["counters"]["playback_underruns"]
    after = len(r.states)
    seen = len(stamps.detections)
    await asyncio.to_thread(rig.start_recording)
    pair0 = await asyncio.to_thread(clock_pair, rig)
    start = await asyncio.to_thread(rig.play, signal)
    try:
        connecting = await r.wait_state("connecting", 10, after=after)
        await r.wait_state("idle", 30, after=connecting)
    except TimeoutError:
        errors.append(f"timed out; states {r.states[after:]}")
    pair1 = await asyncio.to_thread(clock_pair, rig)
    frames, blocks = await asyncio.to_thread(rig.blocks)
    # Detections up to idle + gap: the first is the phrase's; any later one came from
    # nothing the rig played (only digital silence follows the phrase).
    await settle(r, 3.0)
    found = stamps.detections[seen:]
    out: dict[str, Any] = {
        "errors": errors,
        "states": r.states[after:],
        "later_detections": [
            {
                "after_wake_end_s": round(
                    (x.detected_ns - frame_to_ns(start + wake_end_sample, pair0, pair1)) / 1e9, 2
                ),
                "score": round(x.score, 3),
                "started_a_conversation": taken,
            }
            for x, taken in found[1:]
        ],
    }
    if not found or not found[0][1]:
        errors.append("the phrase was not detected (or its detection was ignored)")
        return out
    d = found[0][0]
    frame_of = (pair1[0] - pair0[0]) / ((pair1[1] - pair0[1]) / 1e9)  # frames per second
    # The first sound since the phrase began (the speaker was quiet before it): the
    # wake earcon, checked below to come after the detection.
    earcon_frame = first_sound(frames, blocks, start)
    earcon_ns = frame_to_ns(earcon_frame, pair0, pair1) if earcon_frame is not None else None
    wake_end_ns = frame_to_ns(start + wake_end_sample, pair0, pair1)
    show_ns = stamps.first("show", "connecting", d.detected_ns)
    drawn_ns = stamps.first("render", "connecting", show_ns or d.detected_ns)

    # Where the earcon's time goes: the playback's own stamps (enqueue -> first frame
    # written to ALSA) of the first chunk queued after the detection, and the session
    # set-up that runs in the same transition before the earcon's task can start.
    writes = [(a, b) for a, b in app.playback.stamps.receive_to_write.pairs() if a >= d.reported_ns]
    enqueued_ns, written_ns = min(writes) if writes else (None, None)
    session = next(((a, b) for a, b in stamps.sessions if a >= d.reported_ns), None)

    def ms(a: float | None, b: float | None) -> float | None:
        return round((b - a) / 1e6, 2) if a is not None and b is not None else None

    out.update(
        score=round(d.score, 3),
        detected_to_reported_ms=ms(d.detected_ns, d.reported_ns),
        reported_to_led_show_ms=ms(d.reported_ns, show_ns),
        reported_to_led_drawn_ms=ms(d.reported_ns, drawn_ns),
        reported_to_earcon_ms=ms(d.reported_ns, earcon_ns),
        detected_to_led_show_ms=ms(d.detected_ns, show_ns),
        detected_to_earcon_ms=ms(d.detected_ns, earcon_ns),
        wake_end_to_detected_ms=ms(wake_end_ns, d.detected_ns),
        wake_end_to_earcon_ms=ms(wake_end_ns, earcon_ns),
        reported_to_earcon_enqueued_ms=ms(d.reported_ns, enqueued_ns),
        earcon_enqueued_to_written_ms=ms(enqueued_ns, written_ns),
        earcon_written_to_heard_ms=ms(written_ns, earcon_ns),
        open_session_ms=ms(*session) if session else None,
        playback_underruns=app.status()["counters"]["playback_underruns"] - underruns,
        jack_clock_ppm=round((frame_of / RATE - 1) * 1e6, 1),
        clock_span_s=round((pair1[1] - pair0[1]) / 1e9, 2),
    )
    if earcon_ns is None:
        errors.append("no earcon heard")
    elif earcon_ns < d.detected_ns:
        errors.append("sound at the speaker before the detection")
    elif earcon_ns - d.reported_ns > 500e6:
        errors.append("first sound over 500 ms after the detection: not the earcon?")
    return out


KEYS = (
    ("detected -> reported (capture thread hands it over)", "detected_to_reported_ms"),
    ("reported -> LED show(connecting) called", "reported_to_led_show_ms"),
    ("reported -> LED drawn (first connecting frame)", "reported_to_led_drawn_ms"),
    ("reported -> wake earcon's first sample at the speaker", "reported_to_earcon_ms"),
    ("detected -> LED show(connecting) called", "detected_to_led_show_ms"),
    ("detected -> wake earcon at the speaker", "detected_to_earcon_ms"),
    ("wake word end (audio) -> detected", "wake_end_to_detected_ms"),
    ("wake word end (audio) -> wake earcon at the speaker", "wake_end_to_earcon_ms"),
    ("(earcon) reported -> earcon queued to the playback", "reported_to_earcon_enqueued_ms"),
    ("(earcon) queued -> first frame written to ALSA", "earcon_enqueued_to_written_ms"),
    ("(earcon) written -> first sample at the JACK port", "earcon_written_to_heard_ms"),
    ("(earcon) `_open_session()`, run before the earcon's task", "open_session_ms"),
)


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, key in KEYS:
        values = [t[key] for t in trials if t.get(key) is not None]
        out[key] = {
            "n": len(values),
            "min": min(values, default=None),
            "median": round(statistics.median(values), 1) if values else None,
            "max": max(values, default=None),
            "within_goal": sum(1 for v in values if v <= GOAL_MS),
        }
    out["detections"] = sum(1 for t in trials if "score" in t)
    later = [x for t in trials for x in t["later_detections"]]
    out["later_detections"] = len(later)
    out["later_detections_started_a_conversation"] = sum(
        1 for x in later if x["started_a_conversation"]
    )
    out["trials_with_a_conversation_started_by_itself"] = sum(
        1 for t in trials if any(x["started_a_conversation"] for x in t["later_detections"])
    )
    out["trials"] = len(trials)
    out["errors"] = [e for t in trials for e in t["errors"]]
    return out


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| interval (ms) | median | max | min | <= 100 ms |",
        "|---|---|---|---|---|",
    ]
    for label, key in KEYS:
        s = summary[key]
        lines.append(
            f"| {label} | {s['median']} | {s['max']} | {s['min']} | {s['within_goal']}/{s['n']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="wake words said")
    parser.add_argument("--gap-s", type=float, default=3.0, help="quiet after idle (s)")
    parser.add_argument(
        "--earcons", default="wake,done,error", help="[audio] earcons, comma-separated"
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--log", type=Path, help="the daemon's log (INFO) goes here")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(
            filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
        )
    else:
        logging.basicConfig(level=logging.WARNING)
    started = datetime.datetime.now().astimezone()
    t0 = time.monotonic()
    results = asyncio.run(run(args))
    results["started"] = started.isoformat(timespec="seconds")
    results["wall_s"] = round(time.monotonic() - t0, 1)
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    print()
    print(table(results["summary"]))
    s = results["summary"]
    print(
        f"\n{s['detections']} phrases detected in {s['trials']} trials; later detections "
        f"with only silence playing: {s['later_detections']}, of which "
        f"{s['later_detections_started_a_conversation']} started a conversation "
        f"(in {s['trials_with_a_conversation_started_by_itself']} trials); "
        f"{started:%Y-%m-%d %H:%M}, {results['wall_s']} s wall"
    )
    if args.json:
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
