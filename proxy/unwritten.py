"""The report of usage the writer could not store: one ERROR line per batch, never silence.

A batch is unwritten when the store refused one of its values (:class:`RecordRefused`: a bug
of ours for the proxy's own usage, a bad event for the Lago API's caller, who got a 4xx) or
when the writer gave up on a failing store at shutdown. The line names the request the batch
came from and holds its events as a Lago batch body (``POST /api/v1/events/batch``), so an
operator can bill or replay them; the transaction ids keep a replay from counting twice. Events
hold no key, prompt or completion: only ids, the model, token counts and the like.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from metering.errors import MeteringError, RecordRefused
from metering.models import Event
from metering.ports import EventBatch
from metering.store.codec import to_micros

__all__ = ["UnwrittenReport"]

log = logging.getLogger("tallygate")


class UnwrittenReport:
    """The writer's ``on_unwritten`` hook: one line per batch, and a count for the summary
    that :meth:`summarize` logs when the process stops."""

    def __init__(self) -> None:
        self.batches = 0
        self.events = 0

    def __call__(self, batch: EventBatch, error: BaseException) -> None:
        """Log ``batch`` as not stored, with why (``error``), its request and its events."""
        self.batches += 1
        self.events += len(batch.events)
        if isinstance(error, RecordRefused):
            why = f"the store refused a value: {error.reason}"
        elif isinstance(error, MeteringError):
            why = str(error)
        else:
            why = f"{type(error).__name__}: {error}"
        subscriptions = sorted({event.external_subscription_id for event in batch.events})
        log.error(
            "usage not stored (%s): request %s, %d event(s) of subscription %s; events: %s",
            " ".join(why.split()),  # one line, whatever the driver's message holds
            batch.origin or "unknown",
            len(batch.events),
            _text(", ".join(subscriptions)),
            # Decimal properties as numeric text (Lago reads both); NUL and surrogates escaped.
            json.dumps({"events": [_lago_input(event) for event in batch.events]}, default=str),
        )

    def summarize(self) -> None:
        """At exit: how much was not stored since start, if anything (the lines above say
        what)."""
        if self.batches:
            log.error(
                "%d usage event(s) of %d request(s) were not stored; each request's events are "
                "in a 'usage not stored' line above (replay: POST /api/v1/events/batch)",
                self.events,
                self.batches,
            )


def _lago_input(event: Event) -> dict[str, Any]:
    """The event as Lago's create-event input: what a replay sends back."""
    document: dict[str, Any] = {
        "transaction_id": event.transaction_id,
        "external_subscription_id": event.external_subscription_id,
        "code": event.code,
        "timestamp": str(Decimal(to_micros(event.timestamp)).scaleb(-6)),
        "properties": event.properties,
    }
    if event.precise_total_amount_cents is not None:
        document["precise_total_amount_cents"] = event.precise_total_amount_cents
    return document


def _text(value: str) -> str:
    """``value`` as it reads in a JSON string (NUL and lone surrogates escaped)."""
    return json.dumps(value)[1:-1]
