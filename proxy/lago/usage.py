"""Lago-compatible admin routes: a customer's current usage."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.errors import NotAllowed, NotFound
from metering.event_limits import text_issue
from metering.models import SubscriptionStatus
from proxy.lago.common import gateway_of, lago_json
from proxy.lago_shapes import customer_usage_json

__all__ = ["ROUTES"]

_NO_ACTIVE = "no_active_subscription"


@get("/customers/{external_customer_id:str}/current_usage")
async def current_usage(
    request: Request[Any, Any, Any], external_customer_id: FromPath[str]
) -> Response[bytes]:
    """The usage of the customer's active subscription in its current billing period.

    404 ``customer_not_found`` for an unknown customer; 405 ``no_active_subscription`` when
    the customer has no active subscription with ``external_subscription_id`` (or none given).
    """
    gateway = gateway_of(request)
    store = gateway.store
    if text_issue(external_customer_id) is not None:  # no store holds it (PostgreSQL: NUL)
        raise NotFound("customer")
    customer = await store.get_customer(external_id=external_customer_id)
    external_subscription_id = request.query_params.get("external_subscription_id")
    if not external_subscription_id or text_issue(external_subscription_id) is not None:
        raise NotAllowed(_NO_ACTIVE)
    try:
        subscription = await store.get_subscription(external_id=external_subscription_id)
    except NotFound:
        raise NotAllowed(_NO_ACTIVE) from None
    if (
        subscription.external_customer_id != customer.external_id
        or subscription.status is not SubscriptionStatus.ACTIVE
    ):
        raise NotAllowed(_NO_ACTIVE)
    usage = await gateway.service.current_usage(external_subscription_id, now=gateway.clock())
    return lago_json({"customer_usage": customer_usage_json(usage)})


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [current_usage]
