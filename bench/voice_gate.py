"""The voice gate through the real stack: audio sent, speech lost, reply latency
(not a test: it reports numbers).

    .venv/bin/python bench/voice_gate.py [--trials 3] [--noise 0.003] [--timeout-s 20]
        [--press-after-s 3] [--json FILE] [--log FILE]

One run measures the same scripted toggle conversation with `[behaviour] send_audio =
"speech"` (the voice gate: pymicro-vad, 400 ms lookback, 200 ms hangover, then
`audioStreamEnd`) and `"all"` (the microphone streams the whole conversation, except
while the reply plays in half duplex), alternating the two, `--trials` of each.

The stack: the real daemon (`appliance.daemon.app.Appliance`, started as
tests/rig/appliance.py's `running_appliance` does) on the paced JACK dummy rig
(tests/rig/jack.py: a private server, the `rig` client in its own process, ALSA devices
`rigmic` / `rigspk`), the Live emulator over TLS reached by the real google-genai SDK,
gpiozero mock pins. Config: the rig's (no earcons), plus `conversation_timeout_s = 20`
(the default), `half_duplex_tail_ms = 300` (the default), `send_audio` as the condition.
The emulator replies to every turn with 1.5 s of a 610 Hz tone (24 kHz), think time
50 ms, sent at twice real time; it ends a user turn on 500 ms of quiet audio (its
energy detector) or on `audioStreamEnd`.

The conversation (as a new user tried it): a quiet room (sox pink noise at amplitude
`--noise`, looping; 0 for digital silence) for 3 s (`--press-after-s`) after the daemon
is ready (its 2 s capture ring is full, so the gate's detector has warmed up and settled
on the room before the conversation, as in a daemon that has run for hours), a button
press (`state.Press()` posted to the daemon), then three questions of about 3 s each
(espeak-ng, three voices), each played into the rig's microphone 1.0 s after the
appliance is `listening` (so the half-duplex tail does not eat it), waiting for the
reply to play and `listening` to come back, and after the third the room stays quiet
until the silence timeout ends the conversation (`idle`). Each played signal starts
with 50 ms of the room: the rig's `play()` skips the part of a signal before the first
JACK block boundary (up to 10 ms), which clipped the first syllable's onset.

Measured per trial:

1. Microphone audio sent: `status()["counters"]["mic_bytes_sent"] / 32000` (checked
   against the emulator's received audio), against the speech played (each question's
   loud span: first to last 48 kHz sample with |x| > 0.02); excess per turn = (sent -
   speech) / 3. Input tokens at 25 tokens per second of audio.
2. Speech lost: each question at 16 kHz is cut into 20 ms periods; a period is loud if
   its RMS > 0.02 (on every 3rd sample of the 48 kHz signal, in the phase of the three
   that matches best). The question is located in the received audio as a whole (FFT
   normalised cross-correlation of its loud span); each loud period is then looked for
   +-10 ms around its expected place (tracking the shift found so far), only where the
   received level is within a factor of 2 of the period's (the capture path has unit
   gain). When it is not there, the next 200 ms of the question are looked for +-3 s
   around (a gap before it shifts what follows) and, if they match (> 0.9), the period
   +-10 ms around that. A period is found if the normalised correlation > 0.8, lost
   otherwise. A lone 20 ms period is never searched widely: voiced speech matches some
   other voiced speech within seconds at > 0.8 (a question that was never played
   "arrived" 60 % with a +-3 s search).
   Every 3rd sample is not what the rig gives for fricatives (alsa-lib's rate converter
   filters: energy around 5 kHz matched at 0.6-0.75 although it arrived, with the gate
   off too), so the periods are compared as the capture path gives them: an 11-tap FIR
   over the 48 kHz signal, then every 3rd sample, fitted per question (ridge least
   squares) on the periods that matched > 0.9 in a first pass with plain decimation.
   Checked on a recording of the gate off: all 136 loud periods of a question found
   (weakest 0.96); a question that was not played: 2 of 143 "found"; 0.1 / 0.3 / 0.5 /
   0.8 s cut out of the received audio: 4 of 5 / 13 of 13 / 23 of 24 / 15 of 15
   lost periods reported.
3. Speech end -> reply audio at the emulator: the rig's JACK frame is mapped to
   `time.monotonic_ns()` by reading `rig.frame_time` between two clock reads (the pair
   with the shortest round trip of five) right before each `rig.play()`; the end of
   speech is the frame of the question's last sample with |x| > 0.02; the reply's first
   audio is the first Sent record of the emulator with audio bytes after it (same
   CLOCK_MONOTONIC). Also: speech end -> reply heard at the rig's speaker (JACK frames
   only, no clock mapping).
Plus: `audioStreamEnd` messages received by the emulator, its turns and interruptions,
audio sent after the last reply began (the silence-timeout phase), press -> idle time,
jumps inside each received question (found periods whose places disagree by > 0.5 ms:
audio dropped or repeated), capture overruns, and per trial when audio was sent (runs
of messages, a gap of 150 ms starting a new one), and on the gate: the periods it was
warmed with (not sent) and the periods it sent unjudged because its detector was still
warming up or settling (0 expected: the press comes after the ring has filled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.rig.clock import clock_pair  # noqa: E402

RATE = 48_000
CAPTURE_RATE = 16_000
PERIOD = 320  # 20 ms at 16 kHz
LOUD = 0.02  # full scale: a loud sample (48 kHz) / a loud period's RMS (16 kHz)
MATCH = 0.8  # normalised correlation that counts a period as arrived
FIR_TAPS = 11  # the capture model (48 kHz taps)
RIDGE = 0.01
ANCHOR_PERIODS = 10  # 200 ms of context to find the question again after a gap
ANCHOR_MATCH = 0.9
TOKENS_PER_S = 25
REPLY_MS = 1500
REPLY_HZ = 610  # does not repeat every JACK period (test-rig.md)
QUIET_BEFORE_PRESS_S = 3.0  # > RING_MS: the gate's detector is warm and settled
QUIET_BEFORE_QUESTION_S = 1.0
LEAD_S = 0.05  # room noise at the start of each played signal (see play_question)
CONDITIONS = ("speech", "all")
QUESTIONS = (
    ("what is the weather going to be like tomorrow in the afternoon", "en-us", 160),
    ("can you remind me how long to boil an egg so the yolk stays soft", "en-gb-x-rp", 175),
    ("how far is it from here to the nearest train station by bicycle", "en+f3", 175),
)


# --- sounds ------------------------------------------------------------------------------


def loud_span(q48: Any) -> tuple[int, int]:
    """First and last sample (48 kHz) with |x| > LOUD."""
    idx = np.nonzero(np.abs(q48) > LOUD)[0]
    return int(idx[0]), int(idx[-1])


def make_sounds(noise_level: float) -> tuple[list[Any], Any]:
    """The questions (48 kHz float32) and the room's noise bed (12 s, loops)."""
    from tests.rig.sounds import espeak_48k, noise_48k, silence

    questions = [espeak_48k(text, voice, wpm) for text, voice, wpm in QUESTIONS]
    bed = noise_48k(12, "pinknoise", noise_level) if noise_level > 0 else silence(12)
    longest = max(len(q) for q in questions)
    assert len(bed) >= longest + 3 * RATE, "the noise bed must outlast a question"
    return questions, bed.astype(np.float32)


# --- the JACK clock ----------------------------------------------------------------------


def play_question(rig: Any, q48: Any, bed: Any) -> tuple[int, int, int, int]:
    """Play the question over the noise bed (its first part, then 2 s more of it),
    `LEAD` in; returns (signal's start frame, question's start frame, and the clock pair
    read just before). The rig skips the first part of a signal whose start is not on
    a JACK block boundary (up to 10 ms): the lead is only room noise."""
    lead = round(LEAD_S * RATE)
    sig = bed[: lead + len(q48) + 2 * RATE].copy()
    sig[lead : lead + len(q48)] += q48
    frame, ns = clock_pair(rig)
    start = rig.play(sig)
    return start, start + lead, frame, ns


def watch_settling(gate: Any) -> dict[str, int]:
    """Count, on the daemon's gate, the periods it was warmed with (audio from before a
    stream, not sent) and the periods it sent unjudged because its detector was still
    warming up or settling (`judge` -> None inside `push`; 0 when the ring warmed it)."""
    counts = {"warm": 0, "unjudged_sent": 0}
    if gate is None:
        return counts
    judge, push = gate.judge, gate.push
    pushing = [False]

    def judged(pcm: bytes) -> bool | None:
        verdict = judge(pcm)
        if not pushing[0]:
            counts["warm"] += 1
        elif verdict is None:
            counts["unjudged_sent"] += 1
        return verdict

    def pushed(pcm: bytes) -> Any:
        pushing[0] = True
        try:
            return push(pcm)
        finally:
            pushing[0] = False

    gate.judge, gate.push = judged, pushed
    return counts


# --- one trial ---------------------------------------------------------------------------


async def run_trial(
    condition: str,
    jack: Any,
    questions: list[Any],
    bed: Any,
    timeout_s: float,
    tmp: Path,
    quiet_before_press_s: float = QUIET_BEFORE_PRESS_S,
) -> dict[str, Any]:
    from appliance.daemon.state import Press
    from appliance.live.emulator import Emulator, Reply, Scenario
    from tests.rig.appliance import running_appliance
    from tests.rig.emulator import tone

    scenario = Scenario(
        think_ms=50,
        realtime_factor=2.0,
        use_espeak=False,
        default_reply=Reply(pcm=tone(REPLY_HZ, REPLY_MS)),
    )
    rig = jack.rig
    await asyncio.to_thread(jack.reset)
    await asyncio.to_thread(rig.play, bed, loop=True)
    behaviour = {
        "conversation_timeout_s": timeout_s,
        "half_duplex_tail_ms": 300,
        "send_audio": condition,
    }
    plays: list[dict[str, int]] = []
    errors: list[str] = []
    out: dict[str, Any] = {"condition": condition}
    async with Emulator(scenario) as emu:
        async with running_appliance(jack, emu, tmp, behaviour=behaviour) as r:
            settling = watch_settling(r.app.mic.gate if r.app.mic else None)
            await asyncio.sleep(quiet_before_press_s)
            t_press = time.monotonic_ns()
            r.app.post(Press())
            t_idle = None
            try:
                at = await r.wait_state("listening", 15)
                for q in questions:
                    await asyncio.sleep(QUIET_BEFORE_QUESTION_S)
                    start, at_q, frame, ns = await asyncio.to_thread(play_question, rig, q, bed)
                    plays.append({"start": at_q, "frame": frame, "ns": ns})
                    # Back to the looping bed, in phase with the question's own noise,
                    # once the question has been played.
                    await asyncio.sleep(LEAD_S + len(q) / RATE + 0.3)
                    await asyncio.to_thread(rig.play, bed, loop=True, at_frame=start)
                    speaking = await r.wait_state("speaking", 20, after=at)
                    at = await r.wait_state("listening", 20, after=speaking)
                await r.wait_state("idle", timeout_s + 15, after=at)
                t_idle = time.monotonic_ns()
            except TimeoutError:
                errors.append(f"timed out waiting; states {r.states}")
            status = r.app.status()
            gate = r.app.mic.gate if r.app.mic else None
            out["gate_speech_periods"] = gate.speech_periods if gate else None
            out["gate_warm_periods"] = settling["warm"]
            out["gate_unjudged_sent"] = settling["unjudged_sent"]
            out["states"] = list(r.states)
        sound = await asyncio.to_thread(rig.sound_frames)
    out.update(
        errors=errors,
        mic_bytes_sent=status["counters"]["mic_bytes_sent"],
        capture_overruns=status["counters"]["capture_overruns"],
        playback_underruns=status["counters"]["playback_underruns"],
        status_audio_sent=status["audio_sent"],
        press_to_idle_s=(t_idle - t_press) / 1e9 if t_idle else None,
        connections=len(emu.connections),
        emu_turns=sum(c.turns for c in emu.connections),
        emu_interruptions=sum(c.interruptions for c in emu.connections),
    )
    out.update(analyse(emu, plays, questions, sound, t_press))
    return out


# --- analysis ------------------------------------------------------------------------------


def _ncc(seg: Any, piece: Any, corr: Any) -> tuple[Any, Any]:
    """Normalised correlation (from the raw correlation `corr` of `piece` over `seg`),
    and the RMS of `seg` under each placing of `piece`."""
    c2 = np.concatenate([[0.0], np.cumsum(seg * seg)])
    energy = np.sqrt(np.maximum(c2[len(piece) :] - c2[: -len(piece)], 0.0))
    return corr / (energy * np.linalg.norm(piece) + 1e-12), energy / np.sqrt(len(piece))


def search(
    heard: Any, piece: Any, lo: int, hi: int, *, fft: bool = False, level: bool = True
) -> tuple[float, int]:
    """Best normalised correlation of `piece` starting in heard[lo:hi] (with `level`:
    only where the level is within a factor of 2 of the piece's: the capture path has
    unit gain, so a quiet room never "matches" speech); (value, place), (0, -1) if none."""
    lo, end = max(0, lo), min(len(heard), hi + len(piece))
    seg = heard[lo:end]
    if len(seg) < len(piece):
        return 0.0, -1
    if fft:
        nfft = 1 << (len(seg) + len(piece) - 1).bit_length()
        spec = np.fft.rfft(seg, nfft) * np.conj(np.fft.rfft(piece, nfft))
        corr = np.fft.irfft(spec, nfft)[: len(seg) - len(piece) + 1]
    else:
        corr = np.correlate(seg, piece, mode="valid")
    ncc, there = _ncc(seg, piece, corr)
    if level:
        rms = np.sqrt(np.mean(piece * piece))
        ncc = np.where((there > rms / 2) & (there < rms * 2), ncc, -1.0)
    i = int(np.argmax(ncc))
    return (float(ncc[i]), lo + i) if ncc[i] > -1 else (0.0, -1)


def locate(heard: Any, model: Any, loud: list[int], offset: int) -> list[tuple[float, int]]:
    """(best normalised correlation, place in `heard`) of each loud period `k` of
    `model` (the question at 16 kHz): +-10 ms around where it should be, i.e. the
    question's `offset` plus the shift found so far. When it is not there, the next
    200 ms of the question are looked for +-3 s around (audio lost before this period
    moves everything after it); if they match (> 0.9), the period is looked for again
    +-10 ms around that place. A lone 20 ms period is never searched widely: voiced
    speech matches other voiced speech somewhere in seconds of it at > 0.8."""
    shift, out = 0, []
    for k in loud:
        piece = model[k * PERIOD : (k + 1) * PERIOD]
        expected = offset + k * PERIOD + shift
        value, at = search(heard, piece, expected - 160, expected + 160)
        if value <= MATCH:
            context = model[k * PERIOD : (k + ANCHOR_PERIODS) * PERIOD]
            span = 3 * CAPTURE_RATE
            v, anchor = search(heard, context, expected - span, expected + span, fft=True)
            if v > ANCHOR_MATCH:
                value, at = search(heard, piece, anchor - 160, anchor + 160)
        if value > MATCH:
            shift = at - offset - k * PERIOD
        out.append((value, at))
    return out


def jumps(places: list[tuple[float, int]], loud: list[int]) -> list[float]:
    """Where found periods sit relative to each other changes (ms): audio dropped
    (negative) or repeated (positive) between them. The capture path is sample exact,
    so anything over 0.5 ms is a discontinuity in what was sent."""
    found = [(k, at) for k, (v, at) in zip(loud, places, strict=True) if v > MATCH]
    out = []
    for (k0, a0), (k1, a1) in itertools.pairwise(found):
        moved = (a1 - a0) - (k1 - k0) * PERIOD
        if abs(moved) > 8:
            out.append(round(moved * 1000 / CAPTURE_RATE, 1))
    return out


def capture_model(
    heard: Any, q48: Any, phase: int, found: list[tuple[int, int]], taps: int = FIR_TAPS
) -> Any:
    """The question as the rig's capture gives it at 16 kHz: a short FIR over the 48 kHz
    signal, taken at every 3rd sample, fitted (ridge least squares) on the periods
    `found` as (index, place in heard). alsa-lib's rate conversion is not a plain
    decimation: with every 3rd sample alone, fricatives (energy around 5 kHz) match at
    0.6-0.75 although they arrived."""
    c = taps // 2
    padded = np.concatenate([np.zeros(c + 3), q48, np.zeros(taps + 3)])

    def rows(m: Any) -> Any:  # m: 16 kHz sample indices of the question
        return np.stack([padded[3 * m + phase + j + 3] for j in range(taps)], axis=1)

    n16 = (len(q48) - phase + 2) // 3
    if not found:
        return q48[phase::3][:n16]
    m = np.concatenate([np.arange(k * PERIOD, (k + 1) * PERIOD) for k, _ in found])
    places = np.concatenate([np.arange(at, at + PERIOD) for _, at in found])
    x, y = rows(m), heard[places]
    gram = x.T @ x
    h = np.linalg.solve(gram + RIDGE * np.trace(gram) / taps * np.eye(taps), x.T @ y)
    return rows(np.arange(n16)) @ h


def speech_lost(heard: Any, q48: Any) -> dict[str, Any]:
    """Loud 20 ms periods of the question, and how many arrived (see the docstring)."""
    first, last = loud_span(q48)
    best: tuple[float, int, int] = (-1.0, 0, 0)
    for phase in range(3):
        q16 = q48[phase::3]
        a, b = first // 3, last // 3 + 1
        value, at = search(heard, q16[a:b], 0, len(heard), fft=True, level=False)
        if value > best[0]:
            best = (value, at - a, phase)
    whole, offset, phase = best
    q16 = q48[phase::3]
    n = len(q16) // PERIOD
    rms = np.sqrt((q16[: n * PERIOD].reshape(n, PERIOD) ** 2).mean(axis=1))
    loud = [int(k) for k in np.nonzero(rms > LOUD)[0]]
    # Pass 1: every 3rd sample; the periods that clearly match fit the capture model.
    first_pass = locate(heard, q16, loud, offset)
    sure = [(k, at) for k, (v, at) in zip(loud, first_pass, strict=True) if v > 0.9]
    model = capture_model(heard, q48, phase, sure)
    # Pass 2: the model's periods decide.
    second = locate(heard, model, loud, offset)
    values = [v for v, _ in second]
    found = [v for v in values if v > MATCH]
    return {
        "whole_match": round(whole, 3),
        "loud_periods": len(loud),
        "found": len(found),
        "lost": len(loud) - len(found),
        "lost_at_s": [
            round(k * PERIOD / CAPTURE_RATE, 2)
            for k, v in zip(loud, values, strict=True)
            if v <= MATCH
        ],
        "weakest_found": round(min(found), 3) if found else None,
        "jumps_ms": jumps(second, loud),
        "below_match_every_3rd_sample": sum(1 for v, _ in first_pass if v <= MATCH),
    }


def analyse(
    emu: Any, plays: list[dict[str, int]], questions: list[Any], sound: Any, t_press: int
) -> dict[str, Any]:
    received = emu.received_audio()
    heard = np.frombuffer(received, dtype="<i2").astype(np.float64) / 32768
    speech_s = sum((loud_span(q)[1] - loud_span(q)[0]) / RATE for q in questions)
    reply_audio = [s.t_ns for s in emu.sent if s.audio_bytes > 0]
    records = emu.records
    latencies, speaker_ms, ends_ns = [], [], []
    for play, q in zip(plays, questions, strict=False):
        end_frame = play["start"] + loud_span(q)[1]
        end_ns = play["ns"] + (end_frame - play["frame"]) * 1_000_000_000 // RATE
        ends_ns.append(end_ns)
        first = next((t for t in reply_audio if t > end_ns), None)
        latencies.append(round((first - end_ns) / 1e6, 1) if first else None)
        heard_at = next((int(f) for f in sound if f > end_frame), None)
        speaker_ms.append(round((heard_at - end_frame) * 1000 / RATE, 1) if heard_at else None)
    # Mic audio that reached the emulator after the last reply began: the quiet room
    # until the silence timeout (and, without a gate, nothing stops it).
    last_reply = next((t for t in reply_audio if ends_ns and t > ends_ns[-1]), None)
    tail_bytes = sum(
        len(r.data or b"")
        for r in records
        if r.kind == "audio" and last_reply is not None and r.t_ns > last_reply
    )
    lost = [speech_lost(heard, q) for q in questions[: len(plays)]]
    # What was sent when: runs of audio messages (a gap of 150 ms starts a new one), as
    # [seconds after the press, seconds of audio, ended by audioStreamEnd], and where
    # each question was played, for reading the runs.
    bursts: list[list[Any]] = []
    last_t = None
    for rec in records:
        if rec.kind == "audio":
            if last_t is None or rec.t_ns - last_t > 150_000_000:
                bursts.append([round((rec.t_ns - t_press) / 1e9, 2), 0.0, False])
            bursts[-1][1] += len(rec.data or b"") / (2 * CAPTURE_RATE)
            last_t = rec.t_ns
        elif rec.kind == "audio_stream_end" and bursts:
            bursts[-1][2] = True
    for b in bursts:
        b[1] = round(b[1], 2)
    return {
        "received_s": round(len(received) / (2 * CAPTURE_RATE), 2),
        "speech_s": round(speech_s, 2),
        "audio_stream_end": sum(1 for r in records if r.kind == "audio_stream_end"),
        "after_last_reply_s": round(tail_bytes / (2 * CAPTURE_RATE), 2),
        "end_to_reply_ms": latencies,
        "end_to_speaker_ms": speaker_ms,
        "questions": lost,
        "bursts": bursts,
        "speech_at_s": [
            [
                round((p["ns"] - t_press + (p["start"] - p["frame"] + a) * 1e9 / RATE) / 1e9, 2)
                for a in loud_span(q)
            ]
            for p, q in zip(plays, questions, strict=False)
        ],
    }


# --- the run ------------------------------------------------------------------------------


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    out: dict[str, Any] = {}
    for cond in CONDITIONS:
        ts = [t for t in trials if t["condition"] == cond]
        sent = [t["mic_bytes_sent"] / (2 * CAPTURE_RATE) for t in ts]
        speech = [t["speech_s"] for t in ts]
        qs = [q for t in ts for q in t["questions"]]
        out[cond] = {
            "trials": len(ts),
            "sent_s": [round(s, 2) for s in sent],
            "received_s": [t["received_s"] for t in ts],
            "speech_s": med(speech),
            "sent_s_median": med(sent),
            "excess_per_turn_s": med(
                [(s - p) / len(QUESTIONS) for s, p in zip(sent, speech, strict=True)]
            ),
            "after_last_reply_s": med([t["after_last_reply_s"] for t in ts]),
            "input_tokens": med([s * TOKENS_PER_S for s in sent]),
            "loud_periods": sum(q["loud_periods"] for q in qs),
            "lost": sum(q["lost"] for q in qs),
            "jumps_ms": [j for q in qs for j in q["jumps_ms"]],
            "capture_overruns": [t["capture_overruns"] for t in ts],
            "gate_warm_periods": [t.get("gate_warm_periods") for t in ts],
            "gate_unjudged_sent": [t.get("gate_unjudged_sent") for t in ts],
            "weakest_found": min(
                (q["weakest_found"] for q in qs if q["weakest_found"] is not None), default=None
            ),
            "below_match_every_3rd_sample": sum(q["below_match_every_3rd_sample"] for q in qs),
            "whole_match_min": min((q["whole_match"] for q in qs), default=None),
            "end_to_reply_ms": med([v for t in ts for v in t["end_to_reply_ms"]]),
            "end_to_reply_ms_all": [v for t in ts for v in t["end_to_reply_ms"]],
            "end_to_speaker_ms": med([v for t in ts for v in t["end_to_speaker_ms"]]),
            "audio_stream_end": [t["audio_stream_end"] for t in ts],
            "emu_turns": [t["emu_turns"] for t in ts],
            "emu_interruptions": [t["emu_interruptions"] for t in ts],
            "press_to_idle_s": med([t["press_to_idle_s"] for t in ts]),
            "errors": [e for t in ts for e in t["errors"]],
        }
    return out


def table(summary: dict[str, Any]) -> str:
    s, a = summary["speech"], summary["all"]
    rows = [
        ("trials", "trials"),
        ("speech played per conversation (s)", "speech_s"),
        ("mic audio sent per conversation, median (s)", "sent_s_median"),
        ("mic audio sent, each trial (s)", "sent_s"),
        ("emulator received, each trial (s)", "received_s"),
        ("excess per turn, median (s; goal <= 1)", "excess_per_turn_s"),
        ("sent after the last reply began (s)", "after_last_reply_s"),
        ("input tokens for mic audio (25/s), median", "input_tokens"),
        ("loud 20 ms periods played (all trials)", "loud_periods"),
        ("loud periods lost (goal 0)", "lost"),
        ("jumps inside received questions (ms; none expected)", "jumps_ms"),
        ("capture overruns, each trial", "capture_overruns"),
        ("gate warmed on (periods not sent), each trial", "gate_warm_periods"),
        ("sent unjudged (detector settling), each trial", "gate_unjudged_sent"),
        ("speech end -> reply audio at emulator, median (ms)", "end_to_reply_ms"),
        ("speech end -> reply at the speaker, median (ms)", "end_to_speaker_ms"),
        ("audioStreamEnd received, each trial", "audio_stream_end"),
        ("turns at the emulator, each trial", "emu_turns"),
        ("interruptions at the emulator, each trial", "emu_interruptions"),
        ("press -> idle, median (s)", "press_to_idle_s"),
    ]
    lines = ['| | gate on ("speech") | gate off ("all") |', "|---|---|---|"]
    for label, key in rows:
        lines.append(f"| {label} | {fmt(s[key])} | {fmt(a[key])} |")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    return str(value)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from gpiozero import Device

    from tests.rig.gpio import mock_pins
    from tests.rig.jack import JackAudio, jack_available, jack_rig, rig_alsa_config

    why = jack_available()
    if why:
        raise SystemExit(f"cannot run: {why}")
    questions, bed = make_sounds(args.noise)
    order = [CONDITIONS[i % 2] for i in range(2 * args.trials)]
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, jack_rig() as (server, rig), mock_pins():
        os.environ["ALSA_CONFIG_PATH"] = str(rig_alsa_config(Path(tmp) / "alsa").write())
        os.environ["JACK_DEFAULT_SERVER"] = server.name
        jack = JackAudio(server, rig, Path(os.environ["ALSA_CONFIG_PATH"]))
        for n, condition in enumerate(order, 1):
            trial_dir = Path(tmp) / f"trial{n}"
            trial_dir.mkdir()
            t0 = time.monotonic()
            result = await run_trial(
                condition, jack, questions, bed, args.timeout_s, trial_dir, args.press_after_s
            )
            result["wall_s"] = round(time.monotonic() - t0, 1)
            trials.append(result)
            Device.pin_factory.reset()  # the next daemon claims the same mock pins
            q = result["questions"]
            print(
                f"trial {n} {condition}: sent {result['mic_bytes_sent'] / 32000:.2f} s, "
                f"lost {sum(x['lost'] for x in q)}/{sum(x['loud_periods'] for x in q)}, "
                f"end->reply {result['end_to_reply_ms']} ms, "
                f"audioStreamEnd {result['audio_stream_end']}, "
                f"{result['wall_s']} s",
                *(["ERRORS", result["errors"]] if result["errors"] else []),
                flush=True,
            )
            print(
                "  speech played at (s after the press):",
                result["speech_at_s"],
                "\n  audio sent [at s, seconds, then audioStreamEnd]:",
                result["bursts"],
                flush=True,
            )
    return {"trials": trials, "summary": summarise(trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="conversations per condition")
    parser.add_argument("--noise", type=float, default=0.003, help="pink noise amplitude")
    parser.add_argument("--timeout-s", type=float, default=20.0, help="conversation_timeout_s")
    parser.add_argument(
        "--press-after-s",
        type=float,
        default=QUIET_BEFORE_PRESS_S,
        help="room before the press, from the daemon's ready (s)",
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
    print(f"\n{started:%Y-%m-%d %H:%M}, {results['wall_s']} s wall")
    if args.json:
        with contextlib.suppress(OSError):
            args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
