"""``GET /v1/usage``: a key's view of its subscription's current billing period."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from config import MeteringSettings
from metering.models import ApiKey
from metering.usage import CustomerUsage
from proxy.lago_shapes import customer_usage_json
from proxy.state import Gateway
from proxy.usage_series import parse_series_query, usage_series

__all__ = ["key_usage"]


def _breakdown(usage: CustomerUsage, settings: MeteringSettings) -> list[dict[str, Any]]:
    """Flat (model, type) rows of the gateway's own metric: what a dashboard plots."""
    rows: list[dict[str, Any]] = []
    for charge in usage.charges_usage:
        if charge.metric.code != settings.metric_code:
            continue
        for bucket in charge.filters:
            if bucket.values is None or bucket.events_count == 0:
                continue
            models = bucket.values.get(settings.model_property, ())
            types = bucket.values.get(settings.type_property, ())
            rows.append(
                {
                    "model": models[0] if len(models) == 1 else list(models),
                    "type": types[0] if len(types) == 1 else list(types),
                    "tokens": int(bucket.units)
                    if bucket.units == int(bucket.units)
                    else str(bucket.units),
                    "events_count": bucket.events_count,
                    "amount_cents": bucket.amount_cents,
                }
            )
    return rows


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "external_customer_id": key.external_customer_id,
        "external_subscription_id": key.external_subscription_id,
    }


@get("/v1/usage")
async def key_usage(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The subscription's usage (Lago ``current_usage`` shape) and this key's own share.

    Authenticated by the key itself: a key only ever sees its own subscription and share.
    With any query parameter (``from``, ``to``, ``window``, ``group_by``), the key's own
    token usage as a time series instead (:mod:`proxy.usage_series`).
    """
    gateway: Gateway = request.app.state.gateway
    key = await gateway.auth.authenticate(request.headers.get("authorization"))
    now = gateway.clock()
    params = {name: request.query_params.getall(name) for name in request.query_params}
    if params:
        query = parse_series_query(params, now)
        series = await usage_series(gateway.store, key, query, gateway.settings.metering)
        return {**series, "key": _key_json(key)}
    service = gateway.service
    subscription_usage = await service.current_usage(key.external_subscription_id, now=now)
    own = await service.current_usage(
        key.external_subscription_id, now=now, only=("key_id", key.id)
    )
    return {
        "object": "usage",
        "key": _key_json(key),
        "customer_usage": customer_usage_json(subscription_usage),
        "key_usage": {
            **customer_usage_json(own),
            "breakdown": _breakdown(own, gateway.settings.metering),
        },
    }
