"""The emulator as the model it claims to be: what its setup rejects, how calls run.

The facts are `appliance.live.models.RULES` (shared with `appliance check`); this module
turns them into the service's behaviour: the close a rejected setup field gets, whether
a declared function blocks the model, and what a function response's `scheduling` asks.
"""

from __future__ import annotations

from typing import Any

from appliance.live.models import ModelRules

REJECTED_REASON = "Invalid argument: {field} is not supported by {model}."
"""Close 1007 with this reason, as the service does for a field the model does not take."""


def setup_rejection(setup: dict[str, Any], rules: ModelRules, model: str) -> str | None:
    """Why the model closes on this (normalised) setup, or None when it takes it."""
    name = model if model.startswith("models/") else f"models/{model}"
    generation = setup.get("generation_config") or {}
    if "thinking_config" in generation and not rules.thinking:
        return REJECTED_REASON.format(field="generation_config.thinking_config", model=name)
    if generation.get("enable_affective_dialog") and not rules.affective_dialog:
        return REJECTED_REASON.format(field="enable_affective_dialog", model=name)
    proactivity = setup.get("proactivity") or {}
    if proactivity.get("proactive_audio") is False and not rules.proactive_audio_optional:
        return REJECTED_REASON.format(field="proactivity.proactive_audio=false", model=name)
    return None


def blocking_functions(setup: dict[str, Any], rules: ModelRules) -> frozenset[str]:
    """Names of declared functions whose calls block the model until answered: all of
    them on a model without asynchronous calls; otherwise those declared BLOCKING."""
    names = set()
    for tool in setup.get("tools") or ():
        for decl in (tool or {}).get("function_declarations") or ():
            if not isinstance(decl, dict) or not decl.get("name"):
                continue
            if not rules.async_tools or str(decl.get("behavior", "")).upper() == "BLOCKING":
                names.add(str(decl["name"]))
    return frozenset(names)


def scheduling_of(responses: list[dict[str, Any]], rules: ModelRules) -> str:
    """How the model treats function responses: SILENT, WHEN_IDLE (the default) or
    INTERRUPT; the most urgent one wins. A model without asynchronous calls always
    answers when the call returns (WHEN_IDLE: it was idle, waiting)."""
    if not rules.async_tools:
        return "WHEN_IDLE"
    asked = {str(r.get("scheduling") or "WHEN_IDLE").upper() for r in responses}
    for level in ("INTERRUPT", "WHEN_IDLE", "SILENT"):
        if level in asked:
            return level
    return "WHEN_IDLE"
