"""Token usage as the gateway sees it, read from upstream bodies, and turned into events.

Upstream usage is the truth (reference/openai-usage.md section 5): it is taken verbatim, never
recomputed. Chat/completions/embeddings name the fields ``prompt_tokens`` / ``completion_tokens``;
the Responses API ``input_tokens`` / ``output_tokens``. Cached tokens are a subset of the prompt
and reasoning tokens a subset of the completion, so neither is ever added on top.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from config import MeteringSettings
from metering.models import ApiKey, Event
from proxy.ids import new_event_id

__all__ = ["TokenUsage", "usage_events", "usage_from_body", "usage_from_object"]

UsageSource = Literal["upstream", "estimated"]
#: How far an estimate can be trusted: ``lower_bound`` when the upstream holds input the
#: gateway never saw (Responses ``previous_response_id`` / ``conversation``).
EstimateKind = Literal["lower_bound"]


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Prompt (incl. cached) and completion (incl. reasoning) tokens of one upstream call."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    source: UsageSource = "upstream"
    #: Set on estimates that are known to miss tokens (see :data:`EstimateKind`).
    estimate: EstimateKind | None = None
    #: The upstream's ``usage`` object as it sent it (absent for estimates).
    raw: dict[str, Any] | None = None

    @property
    def total_tokens(self) -> int:
        """Everything billed for the call."""
        return self.prompt_tokens + self.completion_tokens


def _int(value: Any) -> int:
    # bool is an int subclass; a usage field of true/false is garbage, not 1/0.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def usage_from_object(usage: Any) -> TokenUsage | None:
    """Normalise an upstream ``usage`` object (chat or Responses naming); ``None`` if absent."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        prompt, completion = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
        details = usage.get("input_tokens_details")
    elif "prompt_tokens" in usage:
        prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
    else:
        return None
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(cached, prompt),
        raw=usage,
    )


def usage_from_body(body: bytes) -> TokenUsage | None:
    """The usage of a non-streamed JSON response body, ``None`` if it has none or is not JSON."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict):
        return None
    return usage_from_object(document.get("usage"))


def usage_events(
    *,
    request_id: str,
    key: ApiKey,
    model: str,
    usage: TokenUsage,
    timestamp: datetime,
    created_at: datetime,
    settings: MeteringSettings,
) -> tuple[Event, ...]:
    """One event per token type with tokens (design.md section 4), sharing the request id.

    The sum of ``tokens`` over the events equals ``prompt_tokens + completion_tokens``. The
    request's first event also keeps the upstream's usage object verbatim as ``usage_raw``
    (once per request, not per event: it is the largest property). Estimates known to miss
    tokens say so on every event with ``estimate`` (e.g. ``lower_bound``).
    """
    cached = usage.cached_tokens if settings.split_cached_input else 0
    counts = {
        "input": usage.prompt_tokens - cached,
        "cached_input": cached,
        "output": usage.completion_tokens,
    }
    events: list[Event] = []
    for token_type, tokens in counts.items():
        if tokens <= 0:
            continue
        properties: dict[str, Any] = {
            settings.model_property: model,
            settings.type_property: token_type,
            settings.field_name: tokens,
            "key_id": key.id,
            "usage_source": usage.source,
        }
        if usage.estimate is not None:
            properties["estimate"] = usage.estimate
        if usage.raw is not None and not events:
            properties["usage_raw"] = usage.raw
        events.append(
            Event(
                id=new_event_id(),
                transaction_id=f"{request_id}:{token_type}",
                external_subscription_id=key.external_subscription_id,
                code=settings.metric_code,
                timestamp=timestamp,
                created_at=created_at,
                properties=properties,
            )
        )
    return tuple(events)
