"""Lago-compatible admin routes: plans with their charges (create, show, list, update, delete)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_plans import build_plan, referenced_metric_ids
from metering.api_subscriptions import terminate_subscription
from metering.errors import NotFound, ValidationFailed
from metering.models import BillableMetric, Plan, Subscription
from metering.ports import Store
from proxy.lago.catalog_shapes import catalog_json, plan_json
from proxy.lago.common import gateway_of, page_meta, pagination, read_root
from proxy.lago.customers import records_lock

__all__ = ["ROUTES"]

_ROOT = "plan"
_LIVE = ("active", "pending")


def _new_id() -> str:
    return str(uuid.uuid4())


async def _metrics(store: Store, ids: Iterable[str]) -> dict[str, BillableMetric]:
    """The metrics by lago id; any unknown one is Lago's 404 ``billable_metrics_not_found``."""
    found: dict[str, BillableMetric] = {}
    for metric_id in ids:
        try:
            found[metric_id] = await store.get_metric(id=metric_id)
        except NotFound:
            raise NotFound("billable_metric", "billable_metrics_not_found") from None
    return found


async def _metric_codes(store: Store, plans: Iterable[Plan]) -> dict[str, str]:
    codes: dict[str, str] = {}
    for plan in plans:
        for charge in plan.charges:
            if charge.billable_metric_id not in codes:
                try:
                    metric = await store.get_metric(id=charge.billable_metric_id)
                except NotFound:
                    continue
                codes[metric.id] = metric.code
    return codes


async def _code_taken(store: Store, code: Any, own_id: str | None) -> bool:
    if not isinstance(code, str) or not code.strip():
        return False
    try:
        found = await store.get_plan(code=code)
    except NotFound:
        return False
    return found.id != own_id


async def _subscriptions(
    store: Store, plan_code: str, statuses: tuple[str, ...]
) -> list[Subscription]:
    found: list[Subscription] = []
    page_number = 1
    while True:
        page = await store.list_subscriptions(
            plan_code=plan_code, statuses=statuses, page=page_number, per_page=100
        )
        found.extend(page.items)
        if page_number >= page.total_pages:
            return found
        page_number += 1


async def _respond(store: Store, plan: Plan) -> Response[bytes]:
    return catalog_json({_ROOT: plan_json(plan, await _metric_codes(store, [plan]))})


@post("/plans", status_code=200)
async def create_plan(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create a plan with its charges (404 for an unknown metric, 422 listing every issue)."""
    raw = await read_root(request, _ROOT)
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        metrics = await _metrics(store, referenced_metric_ids(raw))
        plan = build_plan(
            raw,
            metrics=metrics,
            id=_new_id(),
            now=gateway.clock(),
            new_id=_new_id,
            code_taken=await _code_taken(store, raw.get("code"), None),
            premium=gateway.settings.metering.premium,
        )
        await store.put_plan(plan)
    return await _respond(store, plan)


@get("/plans/{code:str}")
async def show_plan(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """One plan by code (404 ``plan_not_found``)."""
    store = gateway_of(request).store
    return await _respond(store, await store.get_plan(code=code))


@get("/plans")
async def list_plans(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Plans in creation order, with Lago's pagination ``meta``."""
    page_number, per_page = pagination(request)
    store = gateway_of(request).store
    page = await store.list_plans(page=page_number, per_page=per_page)
    codes = await _metric_codes(store, page.items)
    return catalog_json(
        {"plans": [plan_json(p, codes) for p in page.items], "meta": page_meta(page)}
    )


@put("/plans/{code:str}")
async def update_plan(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """Update the given fields; a given ``charges`` list replaces the charges.

    A plan's code cannot change while subscriptions name it (they refer to it by code).
    """
    raw = await read_root(request, _ROOT)
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        existing = await store.get_plan(code=code)
        metrics = await _metrics(store, referenced_metric_ids(raw))
        plan = build_plan(
            raw,
            metrics=metrics,
            id=existing.id,
            now=gateway.clock(),
            new_id=_new_id,
            code_taken=await _code_taken(store, raw.get("code"), existing.id),
            premium=gateway.settings.metering.premium,
            existing=existing,
        )
        if plan.code != existing.code and await _subscriptions(store, existing.code, ()):
            raise ValidationFailed({"code": ["value_is_invalid"]})
        await store.put_plan(plan)
    return await _respond(store, plan)


@delete("/plans/{code:str}", status_code=200)
async def delete_plan(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """Delete the plan; its live subscriptions are terminated (pending ones canceled)."""
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        plan = await store.get_plan(code=code)
        codes = await _metric_codes(store, [plan])
        now = gateway.clock()
        for subscription in await _subscriptions(store, plan.code, _LIVE):
            await store.put_subscription(terminate_subscription(subscription, now=now))
        await store.delete_plan(plan.id)
    return catalog_json({_ROOT: plan_json(plan, codes)})


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [create_plan, show_plan, list_plans, update_plan, delete_plan]
