"""What the running daemon reports about itself: `appliance status` and systemd's line.

The report gathers a figure from nearly every part (the state, the session, the mic's
and speaker's counters, hands-free, echo cancellation, tokens and cost); it lives here
so that each new part adds its line to the report, not to the wiring in `app.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.daemon.app import Appliance


def status_report(app: Appliance) -> dict[str, Any]:
    """The daemon's state and counters, as `appliance status` shows them."""
    capture, playback = app.capture, app.playback
    session = app.session
    sent_s, audio_tokens = session.audio_sent()
    return {
        "state": app.machine.state,
        "session": session.number,
        "turn": session.turn,
        "connected": session.client is not None,
        "last_error": app.last_error,
        "device_problems": dict(app.device_problems),
        "volume": app.volume.percent if app.volume else None,
        "counters": {
            **session.counters,
            "mic_bytes_sent": app.mic.sent_bytes if app.mic else 0,
            "mic_bytes_dropped_reconnecting": (
                session.client.dropped_audio_bytes if session.client else 0
            ),
            "capture_overruns": capture.overruns.total if capture else 0,
            "playback_underruns": playback.underruns.total if playback else 0,
        },
        "audio_sent": {"seconds": round(sent_s, 2), "input_tokens": audio_tokens},
        "wake": app.hands_free.status(),
        "echo_cancel": app.echo.status() if app.echo else None,
        "tokens": {
            "conversation": app.usage.conversation.as_dict(),
            "today": app.usage.today().as_dict(),
        },
        "cost": app.budget.status(app.usage.conversation, app.usage.today()),
    }


def status_line(app: Appliance) -> str:
    """The state in a few words, for `systemctl status` (STATUS=)."""
    line: str = app.machine.state
    if app.machine.state == "error" and app.last_error:
        line += f": {app.last_error}"
    return line
