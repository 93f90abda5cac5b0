"""What the conversations cost in money, and the daily limit.

The service reports tokens per turn by modality (`usageMetadata`); `UsageBook` sums them
per conversation and per local day (persisted). This module prices those sums with the
`[cost]` table (per million tokens; the defaults are the published prices of the default
model, dated in config.toml) and says when the day's spending has reached
`daily_limit`: from then until local midnight a press gets an earcon and the LEDs'
`limit` look instead of a conversation, so a speaker left in a child's room cannot run
up a bill.

Prices by side and modality: audio in/out; text in/out (thoughts are billed as output
text); image and video input at the text input price (the published table names one
price for "text, image and video" input). Cached tokens are part of the prompt and are
priced as prompt tokens (3.8 Live has no context caching).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.daemon.memory import Tally

if TYPE_CHECKING:
    from appliance.config import CostConfig


def price_of(tally: Tally, prices: CostConfig) -> float:
    """The money `tally`'s tokens cost, in `prices.currency`."""
    per_million = {
        "prompt:AUDIO": prices.audio_in,
        "prompt:TEXT": prices.text_in,
        "prompt:IMAGE": prices.text_in,
        "prompt:VIDEO": prices.text_in,
        "prompt:DOCUMENT": prices.text_in,
        "response:AUDIO": prices.audio_out,
        "response:TEXT": prices.text_out,
        "thoughts:TEXT": prices.text_out,
    }
    total = 0.0
    priced_prompt = priced_response = 0
    for key, tokens in tally.by_modality.items():
        rate = per_million.get(key)
        if rate is None:
            continue
        total += tokens * rate
        if key.startswith("prompt:"):
            priced_prompt += tokens
        elif key.startswith("response:"):
            priced_response += tokens
    # Counts the service gave without a modality breakdown: price them as text (the
    # cheapest reading would hide a bill; audio would overstate it).
    total += max(0, tally.prompt - priced_prompt) * prices.text_in
    total += max(0, tally.response - priced_response) * prices.text_out
    total += tally.thoughts * prices.text_out
    return total / 1_000_000


class Budget:
    """Today's spending against `[cost] daily_limit` (0: no limit)."""

    def __init__(self, prices: CostConfig) -> None:
        self.prices = prices

    def spent(self, tally: Tally) -> float:
        return price_of(tally, self.prices)

    def reached(self, today: Tally) -> bool:
        limit = self.prices.daily_limit
        return limit > 0 and self.spent(today) >= limit

    def status(self, conversation: Tally, today: Tally) -> dict[str, Any]:
        return {
            "currency": self.prices.currency,
            "conversation": round(self.spent(conversation), 4),
            "today": round(self.spent(today), 4),
            "daily_limit": self.prices.daily_limit or None,
            "limit_reached": self.reached(today),
        }

    def describe(self, tally: Tally) -> str:
        return f"{self.spent(tally):.4f} {self.prices.currency}"

    def limit_message(self, today: Tally) -> str:
        """What a refused press or `ask` is told."""
        return (
            f"the daily limit of {self.prices.daily_limit:g} {self.prices.currency} is "
            f"reached ({self.describe(today)} today): no new conversation until midnight; "
            "raise [cost] daily_limit in config.toml to go on"
        )
