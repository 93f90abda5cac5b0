"""Wake word accuracy: hit rate, detection lag and false accepts (not a test: it reports).

    .venv/bin/python bench/wake_accuracy.py [--models okay_nabu alexa ...] [--json FILE]

(default: all four shipped models, about a minute on the 2-core VM)

Runs the shipped pymicro-wakeword models through the project's own code: each stream is
cut into 20 ms periods (640 bytes of 16 kHz mono S16_LE), stamped with their end time in
the stream, and shown in batches of 5 (the capture thread's idle batch) to a real
`WakeListener` (default refractory time, 2 s) around a `MicroWakeWordDetector` with the
model's own threshold. Unpaced: audio is fed as fast as the detector takes it. Nothing
is tuned: the phrase set is fixed in this file and every model gets the same one.

How the set is made (deterministic: espeak-ng and `sox -R` give the same bytes on every
run; nothing is recorded or downloaded):

- Voices: espeak-ng en-us, en, en-gb-x-rp, en+m3, en+f3, en-us+m7; speeds 130, 160 and
  190 words per minute. Everything is converted to 16 kHz mono S16 by sox.
- Hits: "<wake phrase>, <question>" as one espeak-ng utterance (the comma makes espeak's
  short phrase pause; one breath, as a user says it), for every voice x speed with two
  of six questions each: 36 utterances per model and condition. Each sits between 1.5 s
  of silence (or noise) before and after. Conditions: clean; pink noise and brown noise
  (`sox -R synth pinknoise|brownnoise`) added with numpy at 10 dB SNR, the speech power
  taken over the utterance's active 10 ms frames (within 40 dB of its peak), the noise
  running through the pauses too. A hit is a detection between the start of the
  utterance and 0.5 s after its end.
- Detection lag: the wake phrase alone is synthesised with the same voice and speed;
  the end of its last active frame estimates where the wake phrase ends inside the
  full utterance, and the start of the nearest pause (>= 50 ms below the activity
  level) within 150 ms of that estimate is taken as the end (the estimate itself if
  there is no such pause; espeak-ng's comma pause is 120-240 ms). Lag = the stamp of
  the period whose score first passed the threshold (its end) minus that point: the
  delay in audio time, before any batching or scheduling delay of the live capture
  thread (an idle batch of 5 periods adds up to 80 ms more). Each hit is also checked
  against the listener's QUESTION_LOOKBACK_MS: the question is "clipped" when the
  audio kept (from the detection minus the lookback) starts after the end of that
  pause, i.e. after the question began.
- False accepts: one stream (about 13 minutes) of audio that is not the wake phrase: the
  alsa-utils sample WAVs (/usr/share/sounds/alsa/*.wav, a real human voice and
  Noise.wav), 40 ordinary sentences (news-like and household talk, a few starting with
  "okay" as people do) each in four of the voices at rotating speeds, every fourth with
  pink or brown noise at 10 dB SNR, short pauses between them, then 30 s each of pink
  and brown noise and 20 s of white noise at a fan-like level. Detections are counted
  with the listener's own 2 s refractory rule.
- Confusables, reported on their own row and never folded into the false-accept count:
  per model, a few phrases that sound close (e.g. "okay, now bring me the newspaper",
  "okay google", "hey nabu" for okay_nabu), each in all six voices at 160 wpm, clean.

Prints markdown tables; `--json FILE` also writes every number (per-utterance scores,
lags, the false-accept items that fired).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.audio.capture import Period  # noqa: E402
from appliance.voice.wake import (  # noqa: E402
    QUESTION_LOOKBACK_MS,
    SHIPPED_MODELS,
    MicroWakeWordDetector,
    WakeListener,
)

RATE = 16_000
PERIOD = 320  # samples: 20 ms
PERIOD_NS = 20_000_000
BATCH = 5  # periods shown to the taps at once while idle
FRAME = 160  # 10 ms, for the energy envelope
SNR_DB = 10.0
PAD_S = 1.5
HIT_TAIL_S = 0.5
PAUSE_FRAMES = 5  # 50 ms below the activity level: a pause, not a stop consonant
PAUSE_NEAR_S = 0.15

VOICES = ("en-us", "en", "en-gb-x-rp", "en+m3", "en+f3", "en-us+m7")
SPEEDS = (130, 160, 190)
QUESTIONS = (
    "what's the time?",
    "what's the weather like tomorrow?",
    "turn on the kitchen lights",
    "how many grams are in a pound?",
    "set a timer for ten minutes",
    "tell me a joke",
)
NOISES = ("pink", "brown")

SENTENCES = (
    # news-like
    "The city council voted on Tuesday to extend the bus lanes on the main road.",
    "Shares in technology companies fell sharply in early trading this morning.",
    "Heavy rain is expected across the north of the country over the weekend.",
    "The minister said the new budget would be published before the end of the month.",
    "Firefighters were called to a warehouse near the harbour late last night.",
    "The national team won their opening match by two goals to one.",
    "Scientists have found a new species of frog in the mountains of Peru.",
    "Train services between the two cities will be reduced during the repairs.",
    "The museum reopens next week after a three year renovation.",
    "Unemployment fell slightly in the last quarter, according to official figures.",
    "A spokesperson for the hospital said the patient was in a stable condition.",
    "The central bank left interest rates unchanged for the third month running.",
    "Thousands of people gathered in the square to watch the fireworks.",
    "The airport expects record numbers of travellers this summer.",
    "Police are asking for witnesses to come forward after the accident.",
    "The film festival opened with a documentary about life on the ocean floor.",
    "Farmers say the dry spring has cut this year's harvest by a fifth.",
    "The company announced that it will open two new factories next year.",
    "Voters will go to the polls in the regional elections on Sunday.",
    "The bridge will be closed to traffic overnight for inspection.",
    # household talk
    "Can you pass me the salt, please?",
    "I think we're out of milk again, can you get some on the way home?",
    "Don't forget to feed the cat before you leave.",
    "What time is your dentist appointment tomorrow?",
    "Okay, I'll be there in five minutes.",
    "The washing machine has finished, could you hang the clothes up?",
    "Have you seen my keys anywhere? I left them on the table.",
    "Let's have pasta tonight, there's some sauce in the fridge.",
    "Okay, that sounds fine to me.",
    "Turn the music down a bit, I'm on the phone.",
    "Who left the lights on in the bathroom?",
    "We need to leave at eight if we want to catch the train.",
    "My mother is coming for lunch on Sunday.",
    "Okay kids, time to brush your teeth and go to bed.",
    "Is it going to rain this afternoon, do you think?",
    "I put the bins out, but the recycling is still in the garage.",
    "Could you call the plumber about the dripping tap?",
    "Hey, dinner is ready, come and sit down.",
    "The neighbours are having a party again tonight.",
    "Remember to water the tomatoes while I'm away.",
)
FA_VOICES_PER_SENTENCE = 4

CONFUSABLES: dict[str, tuple[str, ...]] = {
    "okay_nabu": (
        "okay, now bring me the newspaper",
        "okay google, what's the time?",
        "hey nabu, what's the time?",
        "okay, no bother",
        "okay, Nadia, let's go",
        "okay, new boots",
    ),
    "alexa": (
        "Alexander, come here please",
        "Alexis, what's the time?",
        "a Lexus is parked outside",
        "Alex, sit down",
        "Electra is a Greek play",
        "hey Siri, what's the time?",
    ),
    "hey_mycroft": (
        "hey Microsoft, what's the time?",
        "hey Minecraft is fun",
        "hey, my craft project is ready",
        "hey Mike, roughed up again?",
        "hey, my car's off",
        "my croft is in the hills",
    ),
    "hey_jarvis": (
        "hey Travis, what's the time?",
        "hey Javier, come here",
        "hey Marvin, sit down",
        "hey, are you there?",
        "hey Jarvie, hello",
        "Jarvis Cocker sings",
    ),
}


# --- audio ----------------------------------------------------------------------------


def sox_raw(inputs: list[str], effects: tuple[str, ...] = (), stdin: bytes | None = None) -> Any:
    """sox (repeatable mode) to 16 kHz mono S16 raw; the samples as int16."""
    cmd = ["sox", "-R", *inputs, "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed"]
    cmd += ["-t", "raw", "-", *effects]
    out = subprocess.run(cmd, input=stdin, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<i2").copy()


_speech_cache: dict[tuple[str, str, int], np.ndarray] = {}


def speak(text: str, voice: str, wpm: int) -> np.ndarray:
    key = (text, voice, wpm)
    if key not in _speech_cache:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
            capture_output=True,
            check=True,
        ).stdout
        _speech_cache[key] = sox_raw(["-t", "wav", "-"], stdin=wav)
    return _speech_cache[key]


def wav_file(path: Path) -> np.ndarray:
    return sox_raw([str(path)])


_noise_cache: dict[str, np.ndarray] = {}


def noise_unit(kind: str, n: int, offset: int) -> np.ndarray:
    """`n` samples of sox `kind`noise scaled to unit RMS, from a fixed 60 s take."""
    if kind not in _noise_cache:
        raw = sox_raw(["-r", str(RATE), "-n"], ("synth", "60", f"{kind}noise")).astype(float)
        raw -= raw.mean()
        _noise_cache[kind] = raw / np.sqrt(np.mean(raw**2))
    take = _noise_cache[kind]
    idx = (offset + np.arange(n)) % len(take)
    return take[idx]


def frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    frames = x[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.asarray(10 * np.log10(np.mean(frames**2, axis=1) + 1e-3))


def active(x: np.ndarray) -> np.ndarray:
    """Which 10 ms frames are speech: within 40 dB of the loudest."""
    db = frame_db(x)
    return np.asarray(db > db.max() - 40)


def speech_power(x: np.ndarray) -> float:
    mask = active(x)
    frames = x[: len(mask) * FRAME].astype(np.float64).reshape(len(mask), FRAME)
    return float(np.mean(frames[mask] ** 2))


def to_i16(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.round(x), -32768, 32767).astype(np.int16))


def wake_end(full: np.ndarray, alone: np.ndarray) -> tuple[int, int, str]:
    """Samples where the wake phrase ends inside `full` and where the question starts
    (the end of that pause), and how the end was found (see the module docstring)."""
    act = active(alone)
    est = (int(np.nonzero(act)[0][-1]) + 1) * FRAME
    db = frame_db(full)
    quiet = np.concatenate([[False], db <= db.max() - 40, [False]])
    edges = np.diff(quiet.astype(np.int8))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    near = [
        (int(a) * FRAME, int(b) * FRAME)
        for a, b in zip(starts, stops, strict=True)
        if b - a >= PAUSE_FRAMES and abs(a * FRAME - est) <= PAUSE_NEAR_S * RATE
    ]
    if near:
        a, b = min(near, key=lambda ab: abs(ab[0] - est))
        return a, b, "pause"
    return est, est, "estimate"


# --- streams --------------------------------------------------------------------------


@dataclass
class Item:
    label: str
    start: int  # sample where its sound starts in the stream
    end: int  # sample where it ends
    wake_end: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stream:
    name: str
    pieces: list[np.ndarray] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    length: int = 0

    def add(self, x: np.ndarray) -> int:
        start = self.length
        self.pieces.append(np.asarray(x, dtype=np.float64))
        self.length += len(x)
        return start

    def pcm(self) -> bytes:
        audio = to_i16(np.concatenate(self.pieces))
        pad = (-len(audio)) % PERIOD
        return np.concatenate([audio, np.zeros(pad, np.int16)]).astype("<i2").tobytes()

    @property
    def minutes(self) -> float:
        return self.length / RATE / 60


def segment(speech: np.ndarray, noise: str | None, k: int, pad_s: float = PAD_S) -> np.ndarray:
    """`pad_s` of quiet, the speech, `pad_s` of quiet; noise over all at SNR_DB."""
    pad = np.zeros(int(pad_s * RATE))
    x = np.concatenate([pad, speech.astype(np.float64), pad])
    if noise:
        level = np.sqrt(speech_power(speech) / 10 ** (SNR_DB / 10))
        x = x + level * noise_unit(noise, len(x), offset=k * 104_729)
    return x


def hit_stream(phrase: str, noise: str | None) -> Stream:
    stream = Stream(f"hits-{noise or 'clean'}")
    k = 0
    for v, voice in enumerate(VOICES):
        for s, wpm in enumerate(SPEEDS):
            for j in range(2):
                question = QUESTIONS[(2 * (v * len(SPEEDS) + s) + j) % len(QUESTIONS)]
                text = f"{phrase}, {question}"
                full = speak(text, voice, wpm)
                end, asked_at, how = wake_end(full, speak(phrase, voice, wpm))
                start = stream.add(segment(full, noise, k)) + int(PAD_S * RATE)
                meta = {"voice": voice, "wpm": wpm, "wake_end_from": how}
                meta["question_start"] = start + asked_at
                stream.items.append(Item(text, start, start + len(full), start + end, meta))
                k += 1
    return stream


def false_accept_stream() -> Stream:
    stream = Stream("false-accepts")
    gaps = (0.4, 0.7, 1.0, 0.5, 0.8)
    k = 0

    def put(label: str, x: np.ndarray, **meta: Any) -> None:
        nonlocal k
        gap = np.zeros(int(gaps[k % len(gaps)] * RATE))
        start = stream.add(np.asarray(x, dtype=np.float64))
        stream.items.append(Item(label, start, start + len(x), meta=meta))
        stream.add(gap)
        k += 1

    for wav in sorted(Path("/usr/share/sounds/alsa").glob("*.wav")):
        put(f"alsa {wav.name}", wav_file(wav))
    for i, sentence in enumerate(SENTENCES):
        for j in range(FA_VOICES_PER_SENTENCE):
            voice = VOICES[(i + j) % len(VOICES)]
            wpm = SPEEDS[(i + 2 * j) % len(SPEEDS)]
            speech = speak(sentence, voice, wpm).astype(np.float64)
            noise = NOISES[(k // 4) % 2] if k % 4 == 3 else None
            if noise:
                level = np.sqrt(speech_power(speech) / 10 ** (SNR_DB / 10))
                speech = speech + level * noise_unit(noise, len(speech), offset=k * 104_729)
            put(sentence, speech, voice=voice, wpm=wpm, noise=noise)
    fan_rms = 1000.0  # about 10 dB under espeak-ng speech as converted here
    for kind, seconds in (("pink", 30), ("brown", 30), ("white", 20)):
        put(f"{kind} noise {seconds} s", fan_rms * noise_unit(kind, seconds * RATE, 0))
    return stream


def confusable_stream(model: str) -> Stream:
    stream = Stream("confusables")
    for text in CONFUSABLES.get(model, ()):
        for voice in VOICES:
            speech = speak(text, voice, 160)
            start = stream.add(segment(speech, None, 0)) + int(PAD_S * RATE)
            stream.items.append(Item(text, start, start + len(speech), meta={"voice": voice}))
    return stream


# --- running the listener -------------------------------------------------------------


class Recording:
    """The detector, with every period's score kept."""

    def __init__(self, detector: MicroWakeWordDetector) -> None:
        self.detector = detector
        self.phrase = detector.phrase
        self.threshold = detector.threshold
        self.scores: list[float] = []

    def score(self, pcm: bytes) -> float:
        value = self.detector.score(pcm)
        self.scores.append(value)
        return value

    def close(self) -> None:
        self.detector.close()


@dataclass
class Heard:
    detections: list[tuple[int, float]]  # (sample at the end of the period, score)
    scores: np.ndarray  # one per period
    threshold: float
    cpu_s: float


def listen(model: str, stream: Stream) -> Heard:
    """Feed the stream to a fresh detector through a WakeListener, idle batch by batch."""
    detector = Recording(MicroWakeWordDetector(model))
    loop = asyncio.new_event_loop()
    found: list[Any] = []
    listener = WakeListener(detector, found.append, loop=loop)
    data = stream.pcm()
    n = len(data) // (2 * PERIOD)
    step = 2 * PERIOD
    periods = [Period(data[i * step : (i + 1) * step], (i + 1) * PERIOD_NS, i) for i in range(n)]
    cpu0 = time.process_time()
    for i in range(0, n, BATCH):
        listener(periods[i : i + BATCH])
    cpu = time.process_time() - cpu0
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    detector.close()
    detections = [(d.detected_ns // PERIOD_NS * PERIOD, float(d.score)) for d in found]
    return Heard(detections, np.array(detector.scores), detector.threshold, cpu)


def top_in(heard: Heard, start: int, end: int) -> float:
    a, b = start // PERIOD, -(-end // PERIOD)
    part = heard.scores[a:b]
    return float(part.max()) if len(part) else 0.0


def judge_hits(stream: Stream, heard: Heard) -> dict[str, Any]:
    rows = []
    claimed: set[int] = set()
    for item in stream.items:
        window_end = item.end + int(HIT_TAIL_S * RATE)
        inside = [i for i, (t, _) in enumerate(heard.detections) if item.start <= t <= window_end]
        claimed.update(inside)
        lag_ms = None
        clipped = None
        margin_ms = None
        if inside and item.wake_end is not None:
            detected = heard.detections[inside[0]][0]
            lag_ms = (detected - item.wake_end) * 1000 / RATE
            # The listener keeps audio from QUESTION_LOOKBACK_MS before the detection.
            kept_from = detected - QUESTION_LOOKBACK_MS * RATE // 1000
            margin_ms = (item.meta["question_start"] - kept_from) * 1000 / RATE
            clipped = margin_ms < 0
        rows.append(
            {
                "text": item.label,
                **item.meta,
                "hit": bool(inside),
                "detections": len(inside),
                "lag_ms": lag_ms,
                "question_clipped": clipped,
                "question_margin_ms": margin_ms,
                "top_score": round(top_in(heard, item.start, window_end), 4),
            }
        )
    stray = len(heard.detections) - len(claimed)
    return {"items": rows, "stray_detections": stray, "cpu_s": heard.cpu_s}


def judge_items(stream: Stream, heard: Heard) -> list[dict[str, Any]]:
    """Detections per item (a detection belongs to the item it falls in, or just after)."""
    rows = []
    bounds = [it.start for it in stream.items[1:]] + [stream.length + RATE]
    for item, nxt in zip(stream.items, bounds, strict=True):
        fired = [s for t, s in heard.detections if item.start <= t < nxt]
        rows.append(
            {
                "text": item.label,
                **item.meta,
                "detections": len(fired),
                "top_score": round(top_in(heard, item.start, nxt), 4),
            }
        )
    return rows


# --- report ---------------------------------------------------------------------------


def lag_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    lags = [r["lag_ms"] for r in rows if r["lag_ms"] is not None]
    if not lags:
        return {"n": 0}
    return {
        "n": len(lags),
        "min_ms": round(min(lags)),
        "median_ms": round(statistics.median(lags)),
        "max_ms": round(max(lags)),
    }


def lag_text(stats: dict[str, Any]) -> str:
    if not stats["n"]:
        return "-"
    return f"{stats['min_ms']} / {stats['median_ms']} / {stats['max_ms']} ms"


def clipped(rows: list[dict[str, Any]]) -> str:
    hits = [r for r in rows if r["hit"]]
    if not hits:
        return "-"
    worst = min(r["question_margin_ms"] for r in hits)
    n = sum(bool(r["question_clipped"]) for r in hits)
    return f"{n} of {len(hits)} (least margin {worst:.0f} ms)"


def frac(rows: list[dict[str, Any]]) -> str:
    return f"{sum(r['hit'] for r in rows)}/{len(rows)}"


def run_model(model: str, fa: Stream) -> dict[str, Any]:
    probe = MicroWakeWordDetector(model)
    phrase, threshold = probe.phrase, probe.threshold
    probe.close()
    text = phrase.lower()
    out: dict[str, Any] = {"model": model, "phrase": text, "threshold": threshold}
    audio_s = 0.0
    cpu_s = 0.0
    for noise in (None, *NOISES):
        stream = hit_stream(text, noise)
        heard = listen(model, stream)
        out[stream.name] = judge_hits(stream, heard)
        audio_s += stream.length / RATE
        cpu_s += heard.cpu_s
    heard = listen(model, fa)
    rows = judge_items(fa, heard)
    out["false_accepts"] = {
        "minutes": round(fa.minutes, 2),
        "detections": len(heard.detections),
        "top_score": round(float(heard.scores.max()), 4),
        "fired": [r for r in rows if r["detections"]],
        "top_items": sorted(rows, key=lambda r: -r["top_score"])[:5],
    }
    audio_s += fa.length / RATE
    cpu_s += heard.cpu_s
    conf = confusable_stream(model)
    if conf.items:
        heard = listen(model, conf)
        rows = judge_items(conf, heard)
        per_phrase: dict[str, dict[str, Any]] = {}
        for r in rows:
            p = per_phrase.setdefault(r["text"], {"fired": 0, "n": 0, "top_score": 0.0})
            p["n"] += 1
            p["fired"] += r["detections"] > 0
            p["top_score"] = max(p["top_score"], r["top_score"])
        out["confusables"] = {"phrases": per_phrase, "items": rows}
    out["x86_cpu_pct_of_audio"] = round(100 * cpu_s / audio_s, 3)
    return out


def report(results: list[dict[str, Any]], fa_minutes: float) -> str:
    lines = [
        f"| model (threshold) | hits clean | hits pink {SNR_DB:.0f} dB | "
        f"hits brown {SNR_DB:.0f} dB | lag clean min / median / max | "
        "lag noisy min / median / max | "
        f"false accepts in {fa_minutes:.1f} min (top score) | confusables fired | "
        f"question clipped by the {QUESTION_LOOKBACK_MS} ms lookback |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        clean = r["hits-clean"]["items"]
        noisy = r["hits-pink"]["items"] + r["hits-brown"]["items"]
        lc, ln = lag_stats(clean), lag_stats(noisy)
        conf = r.get("confusables", {}).get("phrases", {})
        fired = sum(p["fired"] for p in conf.values())
        total = sum(p["n"] for p in conf.values())
        fa = r["false_accepts"]
        lines.append(
            f"| {r['model']} ({r['threshold']}) | {frac(clean)} | "
            f"{frac(r['hits-pink']['items'])} | {frac(r['hits-brown']['items'])} | "
            f"{lag_text(lc)} | {lag_text(ln)} | "
            f"{fa['detections']} ({fa['top_score']:.2f}) | {fired}/{total} | "
            f"{clipped(clean + noisy)} |"
        )
    lines += ["", "Hits by voice and by speed (clean / pink / brown):", ""]
    head = ["model"] + [*VOICES] + [f"{w} wpm" for w in SPEEDS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["model"]]
        keys = [("voice", v) for v in VOICES] + [("wpm", w) for w in SPEEDS]
        for key, value in keys:
            cells.append(
                " / ".join(
                    frac([i for i in r[f"hits-{c}"]["items"] if i[key] == value])
                    for c in ("clean", *NOISES)
                )
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Confusables (clean, six voices at 160 wpm each):", ""]
    lines += ["| model | phrase | fired (of voices) | top score |", "|---|---|---|---|"]
    for r in results:
        for text, p in r.get("confusables", {}).get("phrases", {}).items():
            lines.append(
                f"| {r['model']} | {text} | {p['fired']}/{p['n']} | {p['top_score']:.2f} |"
            )
    lines += ["", "False-accept stream: items that fired, and the highest scores:", ""]
    lines += ["| model | item | detections | top score |", "|---|---|---|---|"]
    for r in results:
        fa = r["false_accepts"]
        shown = {id(x) for x in fa["fired"]}
        for row in fa["fired"] + [x for x in fa["top_items"][:3] if id(x) not in shown]:
            label = row["text"] + (f" ({row['voice']})" if row.get("voice") else "")
            if row.get("noise"):
                label += f" + {row['noise']} noise"
            lines.append(
                f"| {r['model']} | {label} | {row['detections']} | {row['top_score']:.2f} |"
            )
    lines += ["", "Misses and stray detections:", ""]
    for r in results:
        for cond in ("clean", *NOISES):
            block = r[f"hits-{cond}"]
            missed = [i for i in block["items"] if not i["hit"]]
            desc = ", ".join(f"{i['voice']}@{i['wpm']} ({i['top_score']:.2f})" for i in missed[:8])
            desc += ", ..." if len(missed) > 8 else ""
            lines.append(
                f"- {r['model']} {cond}: missed {len(missed)}"
                + (f": {desc}" if desc else "")
                + f"; detections outside any utterance: {block['stray_detections']}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SHIPPED_MODELS))
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()

    t0 = time.monotonic()
    fa = false_accept_stream()
    print(f"false-accept stream: {fa.minutes:.1f} min, {len(fa.items)} items", file=sys.stderr)
    results = []
    for model in args.models:
        print(f"running {model} ...", file=sys.stderr)
        results.append(run_model(model, fa))
    print(report(results, fa.minutes))
    for r in results:
        print(
            f"\n{r['model']}: x86 CPU {r['x86_cpu_pct_of_audio']} % of audio time "
            "(scoring only, unpaced)",
            end="",
        )
    print(f"\n\n(took {time.monotonic() - t0:.0f} s)")
    if args.json:
        meta = {
            "snr_db": SNR_DB,
            "voices": VOICES,
            "speeds_wpm": SPEEDS,
            "false_accept_minutes": round(fa.minutes, 2),
        }
        args.json.write_text(json.dumps({"meta": meta, "models": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
