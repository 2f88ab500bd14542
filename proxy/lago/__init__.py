"""The Lago-compatible admin API (``/api/v1``), guarded by the admin key."""

from __future__ import annotations

from litestar import Router

from proxy.errors import LAGO_PREFIX
from proxy.lago import customers, events, metrics, plans, subscriptions, usage
from proxy.lago.common import admin_guard

__all__ = ["lago_router"]


def lago_router() -> Router:
    """Every admin route under ``/api/v1``, each behind :func:`admin_guard`."""
    handlers = [
        *metrics.ROUTES,
        *plans.ROUTES,
        *customers.ROUTES,
        *subscriptions.ROUTES,
        *events.ROUTES,
        *usage.ROUTES,
    ]
    return Router(path=LAGO_PREFIX, route_handlers=handlers, guards=[admin_guard])
