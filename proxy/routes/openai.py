"""The OpenAI-compatible surface (``/v1``): requests are forwarded and their usage metered."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from litestar import Request, Response, post

from metering.ports import DuplicatePolicy, EventBatch
from proxy.errors import GatewayError
from proxy.request_head import parse_head, replace_fields
from proxy.state import Gateway
from proxy.upstream import ROUTED_RESPONSE_HEADERS, upstream_error
from proxy.usage import TokenUsage, usage_events, usage_from_body

__all__ = ["chat_completions"]


def new_request_id() -> str:
    """tallygate's id of one proxied request (the events' transaction ids derive from it)."""
    return f"req_{uuid.uuid4().hex}"


def _response_headers(upstream: httpx.Response, request_id: str) -> dict[str, str]:
    headers = {
        name: value
        for name, value in upstream.headers.items()
        if name.startswith(ROUTED_RESPONSE_HEADERS)
    }
    if "x-request-id" in upstream.headers:
        headers["x-upstream-request-id"] = upstream.headers["x-request-id"]
    headers["x-request-id"] = request_id
    return headers


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Forward a chat completion and meter its tokens before the response goes out."""
    gateway: Gateway = request.app.state.gateway
    key = await gateway.auth.authenticate(request.headers.get("authorization"))
    body = await request.body()
    head = parse_head(body)
    if head.stream:
        # Streams need the SSE usage extractor and include_usage injection (issue 4); until
        # then they are refused outright rather than forwarded unmetered or mis-metered.
        raise GatewayError(
            "invalid_request",
            "stream=true is not supported by this tallygate version yet",
            code="unsupported_parameter",
            param="stream",
        )
    route = gateway.router.route(head.model)
    gateway.router.check_configured(route)
    if route.upstream_model != route.model:
        body = replace_fields(body, model=route.upstream_model)
    started = gateway.clock()
    request_id = new_request_id()
    try:
        upstream = await gateway.http.post(
            gateway.router.url(route, "chat/completions"),
            content=body,
            headers=gateway.router.headers(route, request.headers),
            timeout=gateway.router.timeout(route),
        )
    except httpx.HTTPError as exc:
        raise upstream_error(route, exc) from None
    if upstream.is_success:
        usage = usage_from_body(upstream.content) or await _estimate(
            gateway, route.model, body, upstream.content
        )
        events = usage_events(
            request_id=request_id,
            key=key,
            model=route.model,
            usage=usage,
            timestamp=started,
            created_at=gateway.clock(),
            settings=gateway.settings.metering,
        )
        # Committed before the response leaves: a crash after this loses no usage.
        await gateway.writer.submit(EventBatch(events=events, policy=DuplicatePolicy.SKIP))
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "application/json"),
        headers=_response_headers(upstream, request_id),
    )


async def _estimate(
    gateway: Gateway, model: str, request_body: bytes, response_body: bytes
) -> TokenUsage:
    """The tiktoken fallback when a successful upstream answer carries no usage."""
    import msgspec

    request_doc = msgspec.json.decode(request_body)
    prompt = await gateway.tokens.acount_chat_prompt(
        request_doc.get("messages") or [], model, tools=request_doc.get("tools")
    )
    texts: list[str] = []
    try:
        response_doc = msgspec.json.decode(response_body)
    except msgspec.DecodeError:
        response_doc = {}
    for choice in response_doc.get("choices") or [] if isinstance(response_doc, dict) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    completion = await gateway.tokens.acount_completion(texts, model)
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, source="estimated")
