"""Lago-compatible admin routes: subscriptions."""

from __future__ import annotations

from litestar.handlers import HTTPRouteHandler

__all__ = ["ROUTES"]

#: The route handlers of this resource, registered by :func:`proxy.lago.lago_router`.
ROUTES: list[HTTPRouteHandler] = []
