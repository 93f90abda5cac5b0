"""What we ask of a Live session: the SDK's connect config, built from `[live]`.

Kept apart from the client so that the one place that knows the SDK's config types is
small and testable without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.genai import types

from appliance.config import LiveConfig


def connect_config(
    live: LiveConfig,
    *,
    automatic_activity_detection: bool,
    resumption_handle: str | None = None,
    function_declarations: Sequence[dict[str, Any]] = (),
) -> types.LiveConnectConfig:
    """The setup message's content.

    `automatic_activity_detection=False` is for hold-to-talk, where the button, not the
    server, says when the user starts and stops speaking (activityStart/activityEnd).
    `function_declarations` are JSON-schema dicts (`name`, `description`, `parameters`)
    of the local tools the model may call.
    """
    speech = types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=live.voice)
        ),
        language_code=live.language,
    )
    tools: list[Any] = []
    if function_declarations:
        tools.append(
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration.model_validate(d) for d in function_declarations
                ]
            )
        )
    if live.google_search:
        tools.append(types.Tool(google_search=types.GoogleSearch()))
    transcription = types.AudioTranscriptionConfig() if live.transcription else None
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=speech,
        system_instruction=types.Content(parts=[types.Part(text=live.system_instruction)]),
        input_audio_transcription=transcription,
        output_audio_transcription=transcription,
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(
                disabled=not automatic_activity_detection
            )
        ),
        session_resumption=(
            types.SessionResumptionConfig(handle=resumption_handle)
            if live.session_resumption
            else None
        ),
        context_window_compression=(
            types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow())
            if live.context_compression
            else None
        ),
        tools=tools or None,
    )
