"""Lago-compatible admin routes: billable metrics (create, show, list, update, delete)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, delete, get, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from metering.api_metrics import build_metric
from metering.errors import NotFound, ValidationFailed
from metering.models import ALL_FILTER_VALUES, BillableMetric, Plan
from metering.ports import Store
from proxy.lago.catalog_shapes import catalog_json, metric_json
from proxy.lago.common import gateway_of, page_meta, pagination, read_root
from proxy.lago.customers import records_lock

__all__ = ["ROUTES", "all_plans"]

_ROOT = "billable_metric"


async def _get(store: Store, code: str) -> BillableMetric:
    try:
        return await store.get_metric(code=code)
    except NotFound:
        raise NotFound("billable_metric", "billable_metric_not_found") from None


async def _code_taken(store: Store, code: Any, own_id: str | None) -> bool:
    if not isinstance(code, str) or not code.strip():
        return False
    try:
        found = await store.get_metric(code=code)
    except NotFound:
        return False
    return found.id != own_id


async def all_plans(store: Store) -> list[Plan]:
    """Every plan, across pages."""
    plans: list[Plan] = []
    page_number = 1
    while True:
        page = await store.list_plans(page=page_number, per_page=100)
        plans.extend(page.items)
        if page_number >= page.total_pages:
            return plans
        page_number += 1


@post("/billable_metrics", status_code=200)
async def create_metric(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Create a metric (422 listing every issue)."""
    raw = await read_root(request, _ROOT)
    gateway = gateway_of(request)
    async with records_lock(request):
        taken = await _code_taken(gateway.store, raw.get("code"), None)
        metric = build_metric(raw, id=str(uuid.uuid4()), now=gateway.clock(), code_taken=taken)
        await gateway.store.put_metric(metric)
    return catalog_json({_ROOT: metric_json(metric)})


@get("/billable_metrics/{code:str}")
async def show_metric(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """One metric by code (404 ``billable_metric_not_found``)."""
    metric = await _get(gateway_of(request).store, code)
    return catalog_json({_ROOT: metric_json(metric)})


@get("/billable_metrics")
async def list_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Metrics in creation order, with Lago's pagination ``meta``."""
    page_number, per_page = pagination(request)
    page = await gateway_of(request).store.list_metrics(page=page_number, per_page=per_page)
    return catalog_json(
        {"billable_metrics": [metric_json(m) for m in page.items], "meta": page_meta(page)}
    )


def _broken_charge_filters(metric: BillableMetric, plans: list[Plan]) -> bool:
    """Whether a plan's charge filter on ``metric`` names a key or value it no longer has."""
    allowed = {f.key: set(f.values) for f in metric.filters}
    for plan in plans:
        for charge in plan.charges:
            if charge.billable_metric_id != metric.id:
                continue
            for charge_filter in charge.filters:
                for key, values in charge_filter.values.items():
                    if key not in allowed:
                        return True
                    if tuple(values) != (ALL_FILTER_VALUES,) and not set(values) <= allowed[key]:
                        return True
    return False


@put("/billable_metrics/{code:str}")
async def update_metric(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """Update the given fields; filters still used by a plan's charge filters cannot go away."""
    raw = await read_root(request, _ROOT)
    gateway = gateway_of(request)
    store = gateway.store
    async with records_lock(request):
        existing = await _get(store, code)
        taken = await _code_taken(store, raw.get("code"), existing.id)
        metric = build_metric(
            raw, id=existing.id, now=gateway.clock(), code_taken=taken, existing=existing
        )
        if metric.filters != existing.filters and _broken_charge_filters(
            metric, await all_plans(store)
        ):
            raise ValidationFailed({"filters": ["value_is_invalid"]})
        await store.put_metric(metric)
    return catalog_json({_ROOT: metric_json(metric)})


@delete("/billable_metrics/{code:str}", status_code=200)
async def delete_metric(request: Request[Any, Any, Any], code: FromPath[str]) -> Response[bytes]:
    """Delete the metric and, as Lago does, the plan charges priced on it; returns the metric."""
    store = gateway_of(request).store
    async with records_lock(request):
        metric = await _get(store, code)
        for plan in await all_plans(store):
            kept = tuple(c for c in plan.charges if c.billable_metric_id != metric.id)
            if len(kept) != len(plan.charges):
                await store.put_plan(msgspec.structs.replace(plan, charges=kept))
        await store.delete_metric(metric.id)
    return catalog_json({_ROOT: metric_json(metric)})


#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = [
    create_metric,
    show_metric,
    list_metrics,
    update_metric,
    delete_metric,
]
