"""Lago-compatible admin routes: events (single, batch, show).

Ingestion goes through the gateway's group-commit writer with ``DuplicatePolicy.REJECT``: the
storage constraint on (``external_subscription_id``, ``transaction_id``) decides duplicates,
never a read before the write.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_events import build_event, build_events
from metering.errors import Conflict
from metering.formats import format_datetime, format_timestamp_ms
from metering.models import Event
from metering.ports import DuplicatePolicy, EventBatch
from proxy.errors import GatewayError
from proxy.lago.common import gateway_of, read_root

__all__ = ["ROUTES", "event_json"]

# Property values keep their text: 12.0 stays "12.0" (Lago compares values as text) and is
# written back as the JSON number it was.
_DECODER = msgspec.json.Decoder(float_hook=Decimal)
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_DUPLICATE = {"transaction_id": ["value_already_exist"]}


def event_json(event: Event, *, created_at: str | None = None) -> dict[str, Any]:
    """Lago's event object (``lago-python-client``'s ``EventResponse``).

    ``created_at`` is the formatted creation time when the caller already has it (a batch's
    events share one).
    """
    return {
        "lago_id": event.id,
        "transaction_id": event.transaction_id,
        "lago_customer_id": None,
        "lago_subscription_id": None,
        "external_subscription_id": event.external_subscription_id,
        "code": event.code,
        "timestamp": format_timestamp_ms(event.timestamp),
        "precise_total_amount_cents": event.precise_total_amount_cents,
        "properties": event.properties,
        "created_at": format_datetime(event.created_at) if created_at is None else created_at,
    }


def _event_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one ``os.urandom`` call.

    ``uuid.uuid4()`` costs a system call and an object per event; a 100-event batch needs 100.
    """
    ids = []
    entropy = os.urandom(16 * count)
    for start in range(0, 16 * count, 16):
        raw = bytearray(entropy[start : start + 16])
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = raw.hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def _json(body: Any) -> Response[bytes]:
    return Response(_ENCODER.encode(body), status_code=200, media_type="application/json")


@post("/events", status_code=200)
async def create_event(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ingest one event; a repeated (subscription, transaction id) is a 422."""
    raw = await read_root(request, "event")
    gateway = gateway_of(request)
    event = build_event(raw, id=_event_ids(1)[0], now=gateway.clock())
    result = await gateway.writer.submit(EventBatch(events=(event,), policy=DuplicatePolicy.REJECT))
    if not result.stored:
        raise Conflict(_DUPLICATE)
    return _json({"event": event_json(event)})


async def _batch_body(request: Request[Any, Any, Any]) -> Any:
    body = await request.body()
    try:
        document = _DECODER.decode(body) if body else None
    except msgspec.DecodeError:
        document = None
    if not isinstance(document, dict):
        raise GatewayError(
            "invalid_request",
            "BadRequest: param is missing or the value is empty or invalid: events",
        )
    return document.get("events")


@post("/events/batch", status_code=200)
async def create_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ingest 1..100 events all together, or none of them (422 keyed by event index)."""
    raw = await _batch_body(request)
    gateway = gateway_of(request)
    count = len(raw) if isinstance(raw, list) else 0
    # Validates every event and builds them in one pass (ValidationFailed lists each issue).
    events = build_events(raw, ids=_event_ids(count), now=gateway.clock())
    result = await gateway.writer.submit(EventBatch(events=events, policy=DuplicatePolicy.REJECT))
    if not result.stored:
        issues = {str(index): _DUPLICATE for index in result.duplicates}
        raise Conflict(issues or {"events": ["value_already_exist"]})
    created_at = format_datetime(events[0].created_at)
    return _json({"events": [event_json(e, created_at=created_at) for e in events]})


@get("/events/{transaction_id:str}")
async def show_event(
    request: Request[Any, Any, Any], transaction_id: FromPath[str]
) -> Response[bytes]:
    """The event by transaction id (``?external_subscription_id=`` narrows it)."""
    subscription = request.query_params.get("external_subscription_id") or None
    event = await gateway_of(request).store.get_event(
        transaction_id=transaction_id, external_subscription_id=subscription
    )
    return _json({"event": event_json(event)})


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [create_event, create_batch, show_event]
