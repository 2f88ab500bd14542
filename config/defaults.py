"""The embedded defaults: one OpenAI upstream and a priced model catalog.

Prices are USD per 1M tokens from OpenAI's public price list (standard tier). The seed's table
(reference: Lago's token-billing template) prices 8K-context gpt-4 at $0.03 / $0.06 and
gpt-4-32k at $0.06 / $0.12 per 1K tokens, i.e. 30 / 60 and 60 / 120 per 1M. Override or extend
any of it in the TOML file.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_document"]

# (input, cached input, output) per 1M tokens; None = not offered / no discount.
_CHAT_PRICES: dict[str, tuple[str, str | None, str]] = {
    "gpt-4": ("30", None, "60"),
    "gpt-4-32k": ("60", None, "120"),
    "gpt-4-turbo": ("10", None, "30"),
    "gpt-3.5-turbo": ("0.5", None, "1.5"),
    "gpt-4o": ("2.5", "1.25", "10"),
    "gpt-4o-mini": ("0.15", "0.075", "0.6"),
    "gpt-4.1": ("2", "0.5", "8"),
    "gpt-4.1-mini": ("0.4", "0.1", "1.6"),
    "gpt-4.1-nano": ("0.1", "0.025", "0.4"),
    "gpt-5": ("1.25", "0.125", "10"),
    "gpt-5-mini": ("0.25", "0.025", "2"),
    "gpt-5-nano": ("0.05", "0.005", "0.4"),
    "o3": ("2", "0.5", "8"),
    "o3-mini": ("1.1", "0.55", "4.4"),
    "o4-mini": ("1.1", "0.275", "4.4"),
}

_EMBEDDING_PRICES: dict[str, str] = {
    "text-embedding-3-small": "0.02",
    "text-embedding-3-large": "0.13",
    "text-embedding-ada-002": "0.1",
}


def default_document() -> dict[str, Any]:
    """The built-in settings as a plain document (the same shape a TOML file has)."""
    models: dict[str, Any] = {}
    for name, (inp, cached, out) in _CHAT_PRICES.items():
        entry: dict[str, Any] = {"upstream": "openai", "input_per_1m": inp, "output_per_1m": out}
        if cached is not None:
            entry["cached_input_per_1m"] = cached
        models[name] = entry
    for name, price in _EMBEDDING_PRICES.items():
        models[name] = {"upstream": "openai", "kind": "embedding", "input_per_1m": price}
    return {
        "upstreams": {
            "openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"}
        },
        "models": models,
    }
