"""The OpenAI-compatible surface (``/v1``): requests are forwarded and their usage metered."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from proxy.metered_call import MeteredCall
from proxy.relay import open_stream, relay_stream
from proxy.request_head import parse_head, replace_fields
from proxy.state import Gateway
from proxy.upstream import upstream_error
from proxy.usage import usage_from_body

__all__ = ["chat_completions"]


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    """Forward a chat completion; its tokens are committed before the last byte goes out."""
    gateway: Gateway = request.app.state.gateway
    key = await gateway.auth.authenticate(request.headers.get("authorization"))
    body = await request.body()
    head = parse_head(body)
    route = gateway.router.route(head.model)
    gateway.router.check_configured(route)
    if route.upstream_model != route.model:
        body = replace_fields(body, model=route.upstream_model)
    call = MeteredCall(gateway=gateway, key=key, route=route, body=body, started=gateway.clock())
    headers = gateway.router.headers(route, request.headers)
    if head.stream:
        upstream, reader = await open_stream(call, head, headers)
        if not upstream.is_success:
            return await _plain_error(call, upstream)
        return Stream(
            relay_stream(call, upstream, reader),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers=call.response_headers(upstream),
        )
    try:
        upstream = await gateway.http.post(
            gateway.router.url(route, "chat/completions"),
            content=body,
            headers=headers,
            timeout=gateway.router.timeout(route),
        )
    except httpx.HTTPError as exc:
        raise upstream_error(route, exc) from None
    if upstream.is_success:
        usage = usage_from_body(upstream.content) or await call.estimate(
            _message_texts(upstream.content)
        )
        await call.record(usage)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
        headers=call.response_headers(upstream),
    )


async def _plain_error(call: MeteredCall, upstream: httpx.Response) -> Response[bytes]:
    """An upstream refusal of a stream request, passed through; 4xx/5xx meter nothing."""
    content = await upstream.aread()
    await upstream.aclose()
    return Response(
        content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
        headers=call.response_headers(upstream),
    )


def _message_texts(response_body: bytes) -> list[str]:
    """The choices' message texts of a chat completion body, for the fallback count."""
    try:
        document = msgspec.json.decode(response_body)
    except msgspec.DecodeError:
        return []
    choices = document.get("choices") if isinstance(document, dict) else None
    texts: list[str] = []
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
    return texts
