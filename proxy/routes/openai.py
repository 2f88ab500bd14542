"""The OpenAI-compatible surface (``/v1``): requests are forwarded and their usage metered.

:func:`forward` is the proxied endpoints' logic, free of any web framework: ``proxy.hot_path``
serves it straight from ASGI (Litestar's layers cost more CPU than the forwarding itself).
The model listing stays ordinary Litestar handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgspec
from litestar import Request, get
from litestar.params import FromPath

from metering.models import ApiKey
from proxy.errors import GatewayError
from proxy.metered_call import MeteredCall
from proxy.relay import Emit, open_stream, relay_stream
from proxy.request_head import parse_head, replace_fields
from proxy.state import Gateway
from proxy.surfaces import Surface
from proxy.upstream import send_upstream
from proxy.upstream_transport import UpstreamResponse
from proxy.usage import TokenUsage, usage_from_object

__all__ = ["ROUTES", "Reply", "forward"]


@dataclass(slots=True)
class Reply:
    """What a proxied request answers: a whole body, or a stream relayed through an emitter."""

    status: int
    #: Raw ASGI header pairs (names lower-case); no length, the server frames the body.
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    #: For a stream: sends the events (``relay_stream`` bound to its call), then ends.
    stream: Callable[[Emit], Awaitable[None]] | None = None


async def forward(
    gateway: Gateway, surface: Surface, key: ApiKey, headers: Mapping[str, str], body: bytes
) -> Reply:
    """Forward one authenticated request; its tokens are committed before the last byte.

    ``headers`` are the client's (lower-case names). Refusals raise :class:`GatewayError`.
    """
    head = parse_head(body)
    if head.stream and not surface.streams:
        raise GatewayError(
            "invalid_request", f"/{surface.endpoint} does not stream", param="stream"
        )
    route = gateway.router.route(head.model)
    gateway.router.check_configured(route)
    if route.upstream_model != route.model:
        body = replace_fields(body, model=route.upstream_model)
    call = MeteredCall(
        gateway=gateway, key=key, route=route, surface=surface, body=body, started=gateway.clock()
    )
    # Shed load before any token exists: usage produced upstream is never dropped later.
    gateway.writer.admit()
    upstream_headers = gateway.router.headers(route, headers)
    if head.stream:
        upstream, reader = await open_stream(call, head, upstream_headers)
        if not upstream.is_success:
            return await _passthrough(call, upstream)
        return Reply(
            upstream.status_code,
            call.response_headers(upstream.headers, b"text/event-stream"),
            stream=partial(relay_stream, call, upstream, reader),
        )
    url = gateway.router.url(route, surface.endpoint)
    upstream = await send_upstream(gateway.http, route, url, upstream_headers, body, stream=False)
    if upstream.is_success:
        usage = _reported_usage(upstream.content)
        if usage is not None:
            await call.record(usage)
        else:
            document = _json_or_none(upstream.content)
            await call.record(await call.estimate(surface.texts(document)))
            if document is None:
                # The upstream did the work (metered, estimated) but its answer is unusable.
                raise GatewayError(
                    "upstream_unavailable",
                    f"The upstream '{route.upstream_name}' returned a malformed response.",
                    code="upstream_invalid_response",
                )
    return Reply(
        upstream.status_code,
        call.response_headers(upstream.headers, b"application/json"),
        upstream.content,
    )


async def _passthrough(call: MeteredCall, upstream: UpstreamResponse) -> Reply:
    """An upstream refusal of a stream request, passed through; 4xx/5xx meter nothing."""
    content = await upstream.aread()
    await upstream.aclose()
    return Reply(
        upstream.status_code,
        call.response_headers(upstream.headers, b"application/json"),
        content,
    )


class _UsageOnly(msgspec.Struct):
    """A response object read for its ``usage`` alone: msgspec checks the rest of the JSON
    without building it (the generated text is most of a response)."""

    usage: Any = None


_USAGE_ONLY = msgspec.json.Decoder(_UsageOnly)


def _reported_usage(content: bytes) -> TokenUsage | None:
    """The usage a JSON object response reports; ``None`` if it has none or is no object."""
    try:
        return usage_from_object(_USAGE_ONLY.decode(content).usage)
    except msgspec.DecodeError:  # also msgspec.ValidationError: not an object
        return None


def _json_or_none(content: bytes) -> Any:
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None


def _model_object(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


@get("/v1/models")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The served catalog in OpenAI's list shape."""
    gateway: Gateway = request.app.state.gateway
    await gateway.auth.authenticate(request.headers.get("authorization"))
    return {
        "object": "list",
        "data": [
            _model_object(name, route.upstream_name)
            for name, route in sorted(gateway.router.models.items())
        ],
    }


@get("/v1/models/{model_id:path}")
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> dict[str, Any]:
    """One served model; 404 ``model_not_found`` otherwise."""
    gateway: Gateway = request.app.state.gateway
    await gateway.auth.authenticate(request.headers.get("authorization"))
    route = gateway.router.route(model_id.lstrip("/"))
    return _model_object(route.model, route.upstream_name)


#: The OpenAI surface's Litestar handlers (the proxied POSTs are served by proxy.hot_path).
ROUTES = [list_models, get_model]
