"""The end-to-end privacy check catches media outside a conversation (so a pass means
something)."""

from __future__ import annotations

from appliance.live.emulator.recorder import Record, Recorder
from tests.rig.privacy import GRACE_NS, PrivacyWatch


def audio_at(t_ns: int) -> Record:
    return Record(t_ns=t_ns, conn=1, kind="audio", message={}, data=b"\0" * 640)


def test_media_inside_a_conversation_or_its_grace_passes_and_outside_fails() -> None:
    watch = PrivacyWatch(started_ns=0)
    watch.timeline = [(100, "connecting"), (200, "listening"), (300, "speaking"), (400, "idle")]
    watch.ended_ns = 10 * GRACE_NS
    recorder = Recorder()
    for t in (150, 350, 400 + GRACE_NS):
        recorder.add(audio_at(t))
    assert watch.violations(recorder) == []
    recorder.add(audio_at(401 + GRACE_NS))  # after the grace: the room, not the user
    recorder.add(Record(t_ns=50, conn=1, kind="video", message={}, data=b"jpeg"))
    assert watch.violations(recorder) == [
        "audio (640 bytes) at 1.00 s",
        "video (4 bytes) at 0.00 s",
    ]
