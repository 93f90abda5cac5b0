"""The daemon as the tools' `ToolContext`: volume, ending the conversation, a look."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.daemon.app import Appliance


class DaemonToolContext:
    """What the model's tools may touch of the running daemon (`ToolContext`)."""

    def __init__(self, app: Appliance) -> None:
        self.app = app

    def get_volume(self) -> int:
        return self.app.volume.percent if self.app.volume else 0

    def set_volume(self, percent: int) -> int:
        return self.app.volume.set(percent) if self.app.volume else 0

    def end_conversation(self) -> None:
        self.app.session.end_after_reply = True

    async def look(self) -> bytes | None:
        camera, live = self.app.camera, self.app.session.client
        if camera is None or live is None:
            return None
        await camera.start()
        try:
            frame = await camera.capture_frame()
        finally:
            await camera.stop()
        live.send_video(frame.jpeg)
        return bytes(frame.jpeg)
