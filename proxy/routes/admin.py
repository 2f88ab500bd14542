"""tallygate's own admin calls (``/admin/v1``), beside the Lago-compatible ``/api/v1``.

Behind the same admin key; errors in OpenAI's envelope (Lago's API has no such resources).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, delete
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from proxy.errors import GatewayError
from proxy.lago.common import admin_guard
from proxy.state import Gateway

__all__ = ["ADMIN_PREFIX", "ROUTES", "StreamOptionsRefusalCleared"]

ADMIN_PREFIX = "/admin/v1"


class StreamOptionsRefusalCleared(msgspec.Struct, kw_only=True):
    """The answer to clearing an upstream's remembered ``stream_options`` refusal."""

    upstream: str
    #: Whether a refusal stood (and was cleared) rather than none being remembered.
    cleared: bool
    #: Until when the cleared refusal would have stood (ISO 8601), or null.
    refused_until: datetime | None


class _OpenAIError(msgspec.Struct):
    error: dict[str, Any]


@delete(
    f"{ADMIN_PREFIX}/upstreams/{{upstream:str}}/stream_options_refusal",
    guards=[admin_guard],
    status_code=200,
    summary="Inject stream_options into an upstream's streams again",
    description=(
        "When an upstream refuses the stream_options.include_usage that the gateway adds to "
        "streamed requests (and accepts the request without it), the gateway remembers that "
        "for upstreams.<name>.stream_options_refusal_seconds and meters the upstream's streams "
        "by estimate meanwhile; /readyz lists the refusals in force. This forgets the refusal "
        "now, so the next stream is sent with the parameter again. Needs the admin key."
    ),
    security=[{"admin_key": []}],
    tags=["tallygate admin"],
    responses={
        401: ResponseSpec(_OpenAIError, description="Missing or wrong admin key"),
        404: ResponseSpec(_OpenAIError, description="No upstream of that name is configured"),
    },
)
async def clear_stream_options_refusal(
    request: Request[Any, Any, Any], upstream: FromPath[str]
) -> StreamOptionsRefusalCleared:
    """Forget the upstream's remembered refusal of the injected ``stream_options``."""
    gateway: Gateway = request.app.state.gateway
    if upstream not in gateway.settings.upstreams:
        raise GatewayError(
            "not_found", f"No upstream named '{upstream}' is configured.", param="upstream"
        )
    until = gateway.stream_options_refusals.clear(upstream)
    return StreamOptionsRefusalCleared(
        upstream=upstream, cleared=until is not None, refused_until=until
    )


#: tallygate's admin handlers.
ROUTES = [clear_stream_options_refusal]
