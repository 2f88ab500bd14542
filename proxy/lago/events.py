"""Lago-compatible admin routes: events (single, batch, show).

Ingestion goes through the gateway's group-commit writer with ``DuplicatePolicy.REJECT``: the
storage constraint on (``external_subscription_id``, ``transaction_id``) decides duplicates,
never a read before the write. Events with a value the store cannot hold are refused alone
(422, other requests' events in the same group commit are written) and logged under the
request's id (the response's ``x-request-id``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_events import (
    MAX_BATCH_EVENTS,
    build_decoded_events,
    build_event,
    build_events,
    decode_batch,
)
from metering.errors import Conflict, NotFound
from metering.event_limits import text_issue
from metering.ports import DuplicatePolicy, EventBatch
from metering.values import json_int
from proxy.errors import GatewayError
from proxy.lago.common import gateway_of
from proxy.lago.event_json import EventIds, encode_event, encode_events
from proxy.request_id import request_id_of

__all__ = ["ROUTES"]

# Property values keep their text: 12.0 stays "12.0" (Lago compares values as text) and is
# written back as the JSON number it was (proxy.lago.event_json).
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _decode(body: bytes) -> Any:
    """The JSON document of a body; ``None`` when it is none.

    msgspec refuses some valid JSON that a client may still send: escaped lone surrogates and
    integers of thousands of digits. The standard library's parser reads those, so that
    validation can say which field a store could not hold (Lago's 422) instead of a bare 400.
    """
    try:
        return _DECODER.decode(body)
    except msgspec.DecodeError:
        pass
    except RecursionError:  # nested past msgspec's bound: Lago's 400
        return None
    try:
        return json.loads(body, parse_float=Decimal, parse_int=json_int, parse_constant=_not_json)
    except (ValueError, RecursionError):  # not JSON (or nested past the parser): Lago's 400
        return None


def _bad_request(root: str) -> GatewayError:
    return GatewayError(
        "invalid_request", f"BadRequest: param is missing or the value is empty or invalid: {root}"
    )


def _root(body: bytes, root: str) -> Any:
    """The value under ``root`` of a JSON object body; Lago's 400 when the body is not one."""
    document = _decode(body) if body else None
    if not isinstance(document, dict):
        raise _bad_request(root)
    return document.get(root)


_IDS = EventIds()
_DUPLICATE = {"transaction_id": ["value_already_exist"]}


def _json(body: bytes) -> Response[bytes]:
    return Response(body, status_code=200, media_type="application/json")


@post("/events", status_code=200)
async def create_event(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ingest one event; a repeated (subscription, transaction id) is a 422."""
    raw = _root(await request.body(), "event")
    if not isinstance(raw, dict) or not raw:
        raise _bad_request("event")
    gateway = gateway_of(request)
    event = build_event(raw, id=_IDS.take(1)[0], now=gateway.clock())
    batch = EventBatch(
        events=(event,), policy=DuplicatePolicy.REJECT, origin=request_id_of(request.scope)
    )
    result = await gateway.writer.submit(batch)
    if not result.stored:
        raise Conflict(_DUPLICATE)
    return _json(encode_event(event))


@post("/events/batch", status_code=200)
async def create_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Ingest 1..100 events all together, or none of them (422 keyed by event index)."""
    body = await request.body()
    gateway = gateway_of(request)
    now = gateway.clock()
    # Validation and building are one pass that lists every issue (ValidationFailed).
    inputs = decode_batch(body)
    if inputs is not None:  # the usual body: events decoded straight into light structs
        ids = _IDS.take(min(len(inputs), MAX_BATCH_EVENTS))
        events = build_decoded_events(inputs, ids=ids, now=now)
    else:
        raw = _root(body, "events")
        count = min(len(raw), MAX_BATCH_EVENTS) if isinstance(raw, list) else 0
        events = build_events(raw, ids=_IDS.take(count), now=now)
    batch = EventBatch(
        events=events, policy=DuplicatePolicy.REJECT, origin=request_id_of(request.scope)
    )
    result = await gateway.writer.submit(batch)
    if not result.stored:
        issues = {str(index): _DUPLICATE for index in result.duplicates}
        raise Conflict(issues or {"events": ["value_already_exist"]})
    return _json(encode_events(events))


@get("/events/{transaction_id:str}")
async def show_event(
    request: Request[Any, Any, Any], transaction_id: FromPath[str]
) -> Response[bytes]:
    """The event by transaction id (``?external_subscription_id=`` narrows it)."""
    subscription = request.query_params.get("external_subscription_id") or None
    if text_issue(transaction_id) is not None or (
        subscription is not None and text_issue(subscription) is not None
    ):
        raise NotFound("event")  # ids no store can hold (PostgreSQL: NUL) name no event
    event = await gateway_of(request).store.get_event(
        transaction_id=transaction_id, external_subscription_id=subscription
    )
    return _json(encode_event(event))


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [create_event, create_batch, show_event]
