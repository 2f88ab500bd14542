"""What every Lago-compatible admin route shares: auth, body roots, pagination, responses.

Lago's conventions (reference/lago-semantics.md section 7): Bearer auth with the admin key,
bodies wrapped in a root key, every success 200, lists with ``meta`` pagination.
"""

from __future__ import annotations

import hmac
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from metering.errors import ValidationFailed
from metering.event_limits import unstorable_text
from metering.ports import Page
from proxy.errors import GatewayError
from proxy.keys import bearer_token
from proxy.state import Gateway

__all__ = [
    "admin_guard",
    "gateway_of",
    "lago_json",
    "page_meta",
    "pagination",
    "read_root",
]

#: Lago's largest page; asking for more gets this many.
MAX_PER_PAGE = 100
#: Pages past any real listing (and past SQLite's integers) are all the same empty page.
_MAX_PAGE = 2**31
# Property values keep their text: 12.0 stays "12.0" (Lago compares values as text).
_BODY_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    """The app's gateway resources."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """401 unless the request carries the admin key (the admin API is off when none is set)."""
    gateway: Gateway = connection.app.state.gateway
    expected = gateway.settings.secret(gateway.settings.admin.api_key_env)
    presented = bearer_token(connection.headers.get("authorization"))
    # As bytes: compare_digest refuses str with characters beyond ASCII (a TypeError, a 500).
    if (
        not expected
        or presented is None
        or not hmac.compare_digest(presented.encode(), expected.encode())
    ):
        raise GatewayError("unauthorized", "Unauthorized")


async def read_root(request: Request[Any, Any, Any], root: str) -> dict[str, Any]:
    """The object under ``root`` in the JSON body; Lago's 400 when it is missing or not one."""
    body = await request.body()
    try:
        document = _BODY_DECODER.decode(body) if body else None
    except (msgspec.DecodeError, RecursionError):  # malformed, or nested past msgspec's bound
        document = None
    value = document.get(root) if isinstance(document, dict) else None
    if not isinstance(value, dict) or not value:
        raise GatewayError(
            "invalid_request",
            f"BadRequest: param is missing or the value is empty or invalid: {root}",
        )
    # Text no store can hold is refused here, for every admin input, not by the store (a NUL
    # is fine in SQLite and a 500 from PostgreSQL).
    issues = unstorable_text(value)
    if issues:
        raise ValidationFailed(issues)
    return value


def pagination(request: Request[Any, Any, Any]) -> tuple[int, int]:
    """``page`` (1-based) and ``per_page`` from the query, clamped to sane bounds."""
    params = request.query_params

    def number(name: str, default: int) -> int:
        raw = params.get(name)
        try:
            return max(1, int(raw)) if raw is not None else default
        except ValueError:
            return default

    return min(number("page", 1), _MAX_PAGE), min(number("per_page", 20), MAX_PER_PAGE)


def page_meta(page: Page[Any]) -> dict[str, Any]:
    """Lago's ``meta`` object for a listing."""
    return {
        "current_page": page.page,
        "next_page": page.page + 1 if page.page < page.total_pages else None,
        "prev_page": page.page - 1 if page.page > 1 else None,
        "total_pages": page.total_pages,
        "total_count": page.total_count,
    }


def lago_json(body: Any, status: int = 200) -> Response[bytes]:
    """A JSON response (Decimals as strings, datetimes as ISO text)."""
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")
