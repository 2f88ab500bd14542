"""Lago-compatible admin routes: customers (upsert, show, list, delete)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_customers import build_customer
from metering.api_subscriptions import terminate_subscription
from metering.errors import NotFound
from metering.formats import format_datetime
from metering.models import Customer, Subscription
from proxy.lago.common import gateway_of, lago_json, page_meta, pagination, read_root

__all__ = ["ROUTES", "customer_json", "records_lock"]


def records_lock(request: Request[Any, Any, Any]) -> asyncio.Lock:
    """The app's lock around customer and subscription read-decide-write sequences.

    The store has no constraint for "one live subscription per external id" nor for the
    customers' sequential ids, so those decisions are serialized within the process.
    """
    return gateway_of(request).records_lock


def customer_json(customer: Customer) -> dict[str, Any]:
    """Lago's customer object (``lago-python-client``'s ``CustomerResponse``)."""
    return {
        "lago_id": customer.id,
        "billing_entity_code": None,
        "external_id": customer.external_id,
        "account_type": "customer",
        "name": customer.name,
        "firstname": None,
        "lastname": None,
        "customer_type": None,
        "sequential_id": customer.sequential_id,
        "slug": None,
        "created_at": format_datetime(customer.created_at),
        "updated_at": format_datetime(customer.updated_at),
        "country": None,
        "address_line1": None,
        "address_line2": None,
        "state": None,
        "zipcode": None,
        "email": customer.email,
        "city": None,
        "url": None,
        "phone": None,
        "logo_url": None,
        "legal_name": None,
        "legal_number": None,
        "currency": customer.currency,
        "tax_identification_number": None,
        "timezone": customer.timezone,
        "applicable_timezone": customer.timezone or "UTC",
        "net_payment_term": None,
        "finalize_zero_amount_invoice": "inherit",
        "skip_invoice_custom_sections": False,
        "billing_configuration": {
            "invoice_grace_period": None,
            "payment_provider": None,
            "payment_provider_code": None,
            "document_locale": None,
        },
        "shipping_address": {
            "address_line1": None,
            "address_line2": None,
            "city": None,
            "zipcode": None,
            "state": None,
            "country": None,
        },
        "metadata": [],
        "taxes": [],
        "integration_customers": [],
        "applicable_invoice_custom_sections": [],
        "error_details": [],
    }


@post("/customers", status_code=200)
async def upsert_customer(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create the customer, or update the one with this ``external_id``."""
    raw = await read_root(request, "customer")
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        now = gateway.clock()
        existing: Customer | None = None
        external_id = raw.get("external_id")
        if isinstance(external_id, str) and external_id.strip():
            try:
                existing = await store.get_customer(external_id=external_id)
            except NotFound:
                existing = None
        sequential_id = 0
        if existing is None:
            sequential_id = (await store.list_customers(page=1, per_page=1)).total_count + 1
        customer = build_customer(
            raw, existing=existing, id=str(uuid.uuid4()), now=now, sequential_id=sequential_id
        )
        await store.put_customer(customer)
    return lago_json({"customer": customer_json(customer)})


@get("/customers/{external_customer_id:str}")
async def show_customer(
    request: Request[Any, Any, Any], external_customer_id: FromPath[str]
) -> Response[bytes]:
    """One customer by external id (404 ``customer_not_found``)."""
    customer = await gateway_of(request).store.get_customer(external_id=external_customer_id)
    return lago_json({"customer": customer_json(customer)})


@get("/customers")
async def list_customers(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Customers in creation order, with Lago's pagination ``meta``."""
    page_number, per_page = pagination(request)
    page = await gateway_of(request).store.list_customers(page=page_number, per_page=per_page)
    return lago_json({"customers": [customer_json(c) for c in page.items], "meta": page_meta(page)})


@delete("/customers/{external_customer_id:str}", status_code=200)
async def delete_customer(
    request: Request[Any, Any, Any], external_customer_id: FromPath[str]
) -> Response[bytes]:
    """Delete the customer; its live subscriptions are terminated (pending ones canceled)."""
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        customer = await store.get_customer(external_id=external_customer_id)
        now = gateway.clock()
        live = await _live_subscriptions(request, external_customer_id)
        ended = [terminate_subscription(s, now=now) for s in live]
        for subscription in ended:
            await store.put_subscription(subscription)
        await store.delete_customer(external_customer_id)
    return lago_json({"customer": customer_json(customer)})


async def _live_subscriptions(
    request: Request[Any, Any, Any], external_customer_id: str
) -> list[Subscription]:
    store = gateway_of(request).store
    found: list[Subscription] = []
    page_number = 1
    while True:
        page = await store.list_subscriptions(
            external_customer_id=external_customer_id,
            statuses=("active", "pending"),
            page=page_number,
            per_page=100,
        )
        found.extend(page.items)
        if page_number >= page.total_pages:
            return found
        page_number += 1


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [upsert_customer, show_customer, list_customers, delete_customer]
