"""A request carries at most one ``Authorization`` header: two are refused (400) on every route.

With two, the proxied endpoints used the last and Litestar's routes the first: one request
could be authenticated with one key by one path and another key by the other. Refusing it
everywhere leaves nothing to read two ways.
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from proxy.errors import GatewayError

__all__ = ["refuse_repeated_authorization", "single_authorization"]

_NAME = b"authorization"


def single_authorization(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """:class:`GatewayError` (400) when ASGI ``headers`` hold more than one Authorization."""
    if sum(1 for name, _ in headers if name == _NAME) > 1:
        raise GatewayError(
            "invalid_request",
            "The request has more than one Authorization header; send exactly one.",
            code="invalid_authorization_header",
        )


def refuse_repeated_authorization(app: ASGIApp) -> ASGIApp:
    """Litestar middleware: :func:`single_authorization` before any guard or handler (its
    error is rendered by the app's exception handlers, in the route's envelope)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            single_authorization(scope["headers"])
        await app(scope, receive, send)

    return middleware
