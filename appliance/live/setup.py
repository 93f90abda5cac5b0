"""What we ask of a Live session: the SDK's connect config, built from `[live]`.

Kept apart from the client so that the one place that knows the SDK's config types is
small and testable without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.genai import types

from appliance.config import LiveConfig
from appliance.live.models import rules_for


def connect_config(
    live: LiveConfig,
    *,
    automatic_activity_detection: bool,
    resumption_handle: str | None = None,
    function_declarations: Sequence[dict[str, Any]] = (),
    media_resolution: str | None = None,
    transparent: bool = True,
) -> types.LiveConnectConfig:
    """The setup message's content.

    `automatic_activity_detection=False` is for hold-to-talk, where the button, not the
    server, says when the user starts and stops speaking (activityStart/activityEnd).
    `function_declarations` are JSON-schema dicts (`name`, `description`, `parameters`,
    and `behavior`: BLOCKING or NON_BLOCKING) of the local tools the model may call; a
    model without asynchronous calls gets them without `behavior`. `media_resolution`
    ("low", "medium", "high") sets what each camera frame costs.

    With `[live] session_resumption` the session is resumable, and `transparent` (the
    default) asks the server to report `last_consumed_client_message_index` in its
    resumption updates, so that after a reconnect the client resends exactly what the
    service had not consumed. google-genai 3.6.1 raises ValueError for `transparent` in
    Gemini Developer API mode (API key); the client then asks again with False.
    """
    rules = rules_for(live.model)
    if not rules.async_tools:
        function_declarations = [
            {k: v for k, v in d.items() if k != "behavior"} for d in function_declarations
        ]
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
            types.SessionResumptionConfig(
                handle=resumption_handle, transparent=True if transparent else None
            )
            if live.session_resumption
            else None
        ),
        context_window_compression=(
            types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow())
            if live.context_compression
            else None
        ),
        tools=tools or None,
        enable_affective_dialog=True if live.affective_dialog else None,
        proactivity=(
            types.ProactivityConfig(proactive_audio=live.proactive_audio)
            if live.proactive_audio is not None
            else None
        ),
        media_resolution=(
            getattr(types.MediaResolution, f"MEDIA_RESOLUTION_{media_resolution.upper()}")
            if media_resolution
            else None
        ),
    )
