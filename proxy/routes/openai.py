"""The OpenAI-compatible surface (``/v1``): requests are forwarded and their usage metered."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Stream

from proxy.errors import GatewayError
from proxy.metered_call import MeteredCall
from proxy.relay import open_stream, relay_stream
from proxy.request_head import parse_head, replace_fields, require_json
from proxy.state import Gateway
from proxy.surfaces import CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, Surface
from proxy.upstream import send_upstream
from proxy.usage import usage_from_body

__all__ = ["ROUTES"]


async def _proxy(request: Request[Any, Any, Any], surface: Surface) -> Response[bytes] | Stream:
    """Forward one request; its tokens are committed before the response's last byte."""
    gateway: Gateway = request.app.state.gateway
    key = await gateway.auth.authenticate(request.headers.get("authorization"))
    require_json(request.headers.get("content-type"))
    body = await request.body()
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
    headers = gateway.router.headers(route, request.headers)
    if head.stream:
        upstream, reader = await open_stream(call, head, headers)
        if not upstream.is_success:
            return await _passthrough(call, upstream)
        return Stream(
            relay_stream(call, upstream, reader),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers=call.response_headers(upstream),
        )
    request_out = gateway.http.build_request(
        "POST",
        gateway.router.url(route, surface.endpoint),
        content=body,
        headers=headers,
        timeout=gateway.router.timeout(route),
    )
    upstream = await send_upstream(gateway.http, request_out, route, stream=False)
    if upstream.is_success:
        document = _json_or_none(upstream.content)
        usage = usage_from_body(upstream.content) or await call.estimate(surface.texts(document))
        await call.record(usage)
        if document is None:
            # The upstream did the work (metered, estimated) but its answer is unusable.
            raise GatewayError(
                "upstream_unavailable",
                f"The upstream '{route.upstream_name}' returned a malformed response.",
                code="upstream_invalid_response",
            )
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
        headers=call.response_headers(upstream),
    )


async def _passthrough(call: MeteredCall, upstream: httpx.Response) -> Response[bytes]:
    """An upstream refusal of a stream request, passed through; 4xx/5xx meter nothing."""
    content = await upstream.aread()
    await upstream.aclose()
    return Response(
        content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
        headers=call.response_headers(upstream),
    )


def _json_or_none(content: bytes) -> Any:
    try:
        return msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """``POST /v1/chat/completions``, plain or streamed."""
    return await _proxy(request, CHAT)


@post("/v1/completions", status_code=200)
async def completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """``POST /v1/completions`` (legacy), plain or streamed."""
    return await _proxy(request, COMPLETIONS)


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """``POST /v1/embeddings``."""
    return await _proxy(request, EMBEDDINGS)


@post("/v1/responses", status_code=200)
async def responses(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """``POST /v1/responses``, plain or streamed (usage from the terminal event)."""
    return await _proxy(request, RESPONSES)


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


#: Every handler of the OpenAI surface, registered by the app.
ROUTES = [chat_completions, completions, embeddings, responses, list_models, get_model]
