"""Lago-compatible admin routes: subscriptions (create, show, list, terminate)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_subscriptions import (
    LIVE_STATUSES,
    Decision,
    SubscriptionInput,
    decide_subscription,
    parse_subscription,
    terminate_subscription,
)
from metering.errors import NotFound
from metering.formats import format_datetime
from metering.models import Customer, Plan, Subscription, SubscriptionStatus
from metering.periods import subscription_period
from metering.ports import Store
from proxy.lago.common import gateway_of, lago_json, page_meta, pagination, read_root
from proxy.lago.customers import records_lock

__all__ = ["ROUTES", "subscription_json"]

_STATUSES = frozenset(s.value for s in SubscriptionStatus)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "lago_id": plan.id,
        "name": plan.name,
        "invoice_display_name": plan.invoice_display_name,
        "created_at": format_datetime(plan.created_at),
        "code": plan.code,
        "interval": str(plan.interval),
        "description": plan.description,
        "amount_cents": plan.amount_cents,
        "amount_currency": plan.amount_currency,
        "trial_period": None if plan.trial_period is None else float(plan.trial_period),
        "pay_in_advance": plan.pay_in_advance,
        "bill_charges_monthly": plan.bill_charges_monthly,
    }


def subscription_json(
    subscription: Subscription, plan: Plan, *, now: datetime, timezone: str | None
) -> dict[str, Any]:
    """Lago's subscription object (``lago-python-client``'s ``SubscriptionResponse``)."""
    period_start: str | None = None
    period_end: str | None = None
    if subscription.status is SubscriptionStatus.ACTIVE:
        period = subscription_period(subscription, plan, now=now, timezone=timezone)
        period_start = format_datetime(period.from_datetime)
        period_end = format_datetime(period.to_datetime)
    canceled = subscription.status is SubscriptionStatus.CANCELED
    return {
        "lago_id": subscription.id,
        "external_id": subscription.external_id,
        "lago_customer_id": subscription.customer_id,
        "external_customer_id": subscription.external_customer_id,
        "billing_entity_code": None,
        "name": subscription.name,
        "plan_code": subscription.plan_code,
        "plan_amount_cents": plan.amount_cents,
        "plan_amount_currency": plan.amount_currency,
        "status": str(subscription.status),
        "billing_time": str(subscription.billing_time),
        "subscription_at": format_datetime(subscription.subscription_at),
        "started_at": _iso(subscription.started_at),
        "trial_ended_at": None,
        "ending_at": _iso(subscription.ending_at),
        "terminated_at": None if canceled else _iso(subscription.terminated_at),
        "canceled_at": _iso(subscription.terminated_at) if canceled else None,
        "created_at": format_datetime(subscription.created_at),
        "previous_plan_code": None,
        "next_plan_code": None,
        "downgrade_plan_date": None,
        "current_billing_period_started_at": period_start,
        "current_billing_period_ending_at": period_end,
        "on_termination_credit_note": None,
        "on_termination_invoice": "generate",
        "consolidate_invoice": None,
        "purchase_order_number": None,
        "cancellation_reason": None,
        "activated_at": _iso(subscription.started_at),
        "payment_method": {"payment_method_type": "provider", "payment_method_id": None},
        "plan": _plan_json(plan),
        "activation_rules": [],
    }


class _Renderer:
    """Serializes subscriptions, looking each plan and customer time zone up once."""

    def __init__(self, store: Store, now: datetime) -> None:
        self._store = store
        self._now = now
        self._plans: dict[str, Plan] = {}
        self._zones: dict[str, str | None] = {}

    async def render(self, subscription: Subscription) -> dict[str, Any]:
        plan = self._plans.get(subscription.plan_id)
        if plan is None:
            plan = await self._store.get_plan(id=subscription.plan_id)
            self._plans[plan.id] = plan
        key = subscription.external_customer_id
        if key not in self._zones:
            try:
                customer = await self._store.get_customer(external_id=key)
            except NotFound:
                self._zones[key] = None
            else:
                self._zones[key] = customer.timezone
        return subscription_json(subscription, plan, now=self._now, timezone=self._zones[key])


async def _live(store: Store, external_id: str) -> Subscription | None:
    """The active or pending subscription with this external id, if any."""
    try:
        newest = await store.get_subscription(external_id=external_id)
    except NotFound:
        return None
    return newest if newest.status in LIVE_STATUSES else None


async def _create(store: Store, request_input: SubscriptionInput, now: datetime) -> Subscription:
    """Decide and write (customer first when it is new); nothing is written on refusal."""
    try:
        plan: Plan | None = await store.get_plan(code=request_input.plan_code)
    except NotFound:
        plan = None
    customer: Customer | None
    try:
        customer = await store.get_customer(external_id=request_input.external_customer_id)
    except NotFound:
        customer = None
    live = await _live(store, request_input.external_id)
    new_customer_id = str(uuid.uuid4())
    decision, subscription = decide_subscription(
        request_input,
        plan=plan,
        customer=customer,
        live=live,
        id=str(uuid.uuid4()),
        customer_id=new_customer_id,
        now=now,
    )
    if decision is Decision.CREATE:
        if customer is None:
            sequential_id = (await store.list_customers(page=1, per_page=1)).total_count + 1
            customer = Customer(
                id=new_customer_id,
                external_id=request_input.external_customer_id,
                created_at=now,
                updated_at=now,
                sequential_id=sequential_id,
            )
            await store.put_customer(customer)
        await store.put_subscription(subscription)
    return subscription


@post("/subscriptions", status_code=200)
async def create_subscription(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Subscribe a customer (created when unknown) to a plan; idempotent per external id."""
    raw = await read_root(request, "subscription")
    request_input = parse_subscription(raw)
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        now = gateway.clock()
        subscription = await _create(store, request_input, now)
    body = await _Renderer(store, now).render(subscription)
    return lago_json({"subscription": body})


@get("/subscriptions/{external_id:str}")
async def show_subscription(
    request: Request[Any, Any, Any], external_id: FromPath[str]
) -> Response[bytes]:
    """The newest subscription with this external id (``?status=`` narrows it)."""
    gateway = gateway_of(request)
    subscription = await gateway.store.get_subscription(external_id=external_id)
    wanted = request.query_params.get("status")
    if wanted is not None and wanted != subscription.status.value:
        raise NotFound("subscription")
    body = await _Renderer(gateway.store, gateway.clock()).render(subscription)
    return lago_json({"subscription": body})


@get("/subscriptions")
async def list_subscriptions(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Subscriptions filtered by customer, plan and ``status[]`` (default: active)."""
    gateway = gateway_of(request)
    params = request.query_params
    asked = [*params.getall("status[]", []), *params.getall("status", [])]
    statuses = [s for s in asked if s in _STATUSES] or ["active"]
    page_number, per_page = pagination(request)
    page = await gateway.store.list_subscriptions(
        external_customer_id=params.get("external_customer_id") or None,
        plan_code=params.get("plan_code") or None,
        statuses=statuses,
        page=page_number,
        per_page=per_page,
    )
    renderer = _Renderer(gateway.store, gateway.clock())
    items = [await renderer.render(s) for s in page.items]
    return lago_json({"subscriptions": items, "meta": page_meta(page)})


@delete("/subscriptions/{external_id:str}", status_code=200)
async def terminate(request: Request[Any, Any, Any], external_id: FromPath[str]) -> Response[bytes]:
    """Terminate the live subscription (a pending one is canceled); returns it."""
    gateway = gateway_of(request)
    store = gateway.store
    now = gateway.clock()
    async with records_lock(request):
        live = await _live(store, external_id)
        if live is None:
            raise NotFound("subscription")
        ended = terminate_subscription(live, now=now)
        await store.put_subscription(ended)
    body = await _Renderer(store, now).render(ended)
    return lago_json({"subscription": body})


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [
    create_subscription,
    show_subscription,
    list_subscriptions,
    terminate,
]
