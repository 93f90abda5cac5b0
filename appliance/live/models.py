"""What each Live model generation accepts and how it behaves: one table, in one place.

The appliance reads it to tell a user, before anything connects, that the config asks
the chosen model for something it rejects (`appliance check`), and to build a setup the
model takes; the emulator reads it to behave like the model it claims to be (close the
connection the way the service does on a rejected field, run function calls
asynchronously where the model does). Facts: ../shared/notes/live-protocol.md, from the
Live API docs of late 2026.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

DEFAULT_MODEL = "gemini-3.8-live"
"""The stable (GA since September 2026) Live model. Previews are retired with little
notice, and a speaker on a shelf that loses its model stops working."""


@dataclass(frozen=True, slots=True)
class ModelRules:
    """One generation of Live models."""

    pattern: str
    """Model names it covers (fnmatch, without `models/`)."""
    generation: str
    preview: bool
    thinking: bool
    """Accepts `thinking_config` (a thinking budget)."""
    affective_dialog: bool
    """Accepts `enable_affective_dialog`."""
    proactive_audio_optional: bool
    """`proactivity.proactive_audio` may be set to false (on 3.8 it is always on)."""
    async_tools: bool
    """Function calls run asynchronously unless declared BLOCKING (NON_BLOCKING is the
    default), and a function response's `scheduling` is honoured."""


RULES: tuple[ModelRules, ...] = (
    ModelRules(
        "gemini-3.8-live*",
        "3.8",
        preview=False,
        thinking=False,
        affective_dialog=False,
        proactive_audio_optional=False,
        async_tools=True,
    ),
    ModelRules(
        "gemini-3.1-flash-live-preview*",
        "3.1 (legacy preview)",
        preview=True,
        thinking=False,
        affective_dialog=False,
        proactive_audio_optional=False,
        async_tools=True,
    ),
    ModelRules(
        "*native-audio*",
        "2.5 native audio (preview)",
        preview=True,
        thinking=True,
        affective_dialog=True,
        proactive_audio_optional=True,
        async_tools=False,
    ),
)

UNKNOWN = ModelRules(
    "*",
    "unknown",
    preview=False,
    thinking=True,
    affective_dialog=True,
    proactive_audio_optional=True,
    async_tools=False,
)
"""For a model this table does not know: assume it takes everything (the service will
say otherwise)."""


def rules_for(model: str) -> ModelRules:
    """The rules of `model` (with or without the `models/` prefix)."""
    name = model.removeprefix("models/")
    for rules in RULES:
        if fnmatch.fnmatchcase(name, rules.pattern):
            return rules
    return UNKNOWN


def rejected_options(
    model: str,
    *,
    affective_dialog: bool,
    proactive_audio: bool | None,
) -> list[str]:
    """The `[live]` options set to something `model` rejects, each with why (empty: none)."""
    rules = rules_for(model)
    name = model.removeprefix("models/")
    out = []
    if affective_dialog and not rules.affective_dialog:
        out.append(f"affective_dialog: {name} has no affective dialog; set it to false")
    if proactive_audio is False and not rules.proactive_audio_optional:
        out.append(f"proactive_audio: {name} always has proactive audio; remove the key")
    return out
