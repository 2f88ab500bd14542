"""Streaming relay: include_usage injected upstream, chunks forwarded as they arrive, usage
committed before the stream's final event, and metered even when the stream breaks (the
client's stream then ends with an error event, as OpenAI ends a stream that fails midway)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import httpx

from proxy.errors import GatewayError, openai_error
from proxy.metered_call import MeteredCall
from proxy.request_head import RequestHead, with_stream_usage
from proxy.sse import SSEReader
from proxy.upstream import send_upstream
from proxy.upstream_transport import UpstreamResponse
from proxy.usage import TokenUsage

__all__ = ["Emit", "open_stream", "relay_stream"]

log = logging.getLogger("tallygate.upstream")


async def open_stream(
    call: MeteredCall, head: RequestHead, headers: Mapping[str, str]
) -> tuple[UpstreamResponse, SSEReader]:
    """Send the streaming request upstream (with ``include_usage`` unless the upstream is
    known to refuse it) and return the open response and the reader for its events."""
    gateway, route = call.gateway, call.route
    asked = head.stream_options is not None and head.stream_options.include_usage is True
    # A client that asked for usage already sends what would be injected: its bytes go as they are.
    inject = (
        call.surface.injects_usage
        and not asked
        and not gateway.stream_options_refusals.refuses(route.upstream_name, gateway.clock)
    )
    upstream = await _send(call, with_stream_usage(call.body) if inject else call.body, headers)
    if inject and upstream.status_code == 400:
        upstream = await _refused(call, upstream, headers)
    return upstream, SSEReader(strip_usage=not asked)


async def _refused(
    call: MeteredCall, refusal: UpstreamResponse, headers: Mapping[str, str]
) -> UpstreamResponse:
    """The answer to a request whose injected ``stream_options`` met a 400.

    A 400 that mentions ``stream_options`` may be about the injected field, or about the
    client's own request (upstreams echo client values: a message whose role is
    "stream_options"). The client's own bytes, sent again, tell which: only if they succeed is
    the refusal remembered (fail open: the upstream's streams are estimated for a while).
    """
    content = await refusal.aread()
    await refusal.aclose()
    if b"stream_options" not in content:
        return refusal  # about something else: the client's to see
    retry = await _send(call, call.body, headers)
    if retry.is_success:
        gateway, name = call.gateway, call.route.upstream_name
        seconds = call.route.upstream.stream_options_refusal_seconds
        if seconds > 0:
            until = gateway.clock() + timedelta(seconds=seconds)
            gateway.stream_options_refusals.remember(name, until)
        log.warning(
            "upstream %r refused the stream_options the gateway injects and accepted the "
            "request without them: its streams are metered by estimate for %g s "
            "(DELETE /admin/v1/upstreams/%s/stream_options_refusal clears this)",
            name,
            seconds,
            name,
        )
    return retry


async def _send(call: MeteredCall, body: bytes, headers: Mapping[str, str]) -> UpstreamResponse:
    gateway, route = call.gateway, call.route
    url = gateway.router.url(route, call.surface.endpoint)
    return await send_upstream(gateway.http, route, url, headers, body, stream=True)


#: Sends bytes to the client; ``more=False`` ends the response (with those bytes).
Emit = Callable[[bytes, bool], Awaitable[None]]


async def relay_stream(
    call: MeteredCall, upstream: UpstreamResponse, reader: SSEReader, emit: Emit
) -> None:
    """Forward the upstream's events; record usage (upstream's, else estimated) exactly once.

    A client disconnect cancels the caller: the ``finally`` still meters what was generated,
    and the upstream call is closed so generation stops.
    """
    recorded = False
    call.gateway.stream_opened()
    try:
        broken: httpx.HTTPError | None = None
        try:
            async for piece in upstream.aiter_raw():
                out = reader.feed(piece)
                if out:
                    await emit(out, True)
        except httpx.HTTPError as exc:
            broken = exc  # cut, reset or timed out mid-stream
        usage = await _record(call, reader)
        recorded = True
        if broken is None or reader.done:
            # [DONE] (or the terminal event) goes with the end of the response: one write.
            await emit(reader.tail(), False)
        else:
            # As OpenAI ends a stream that failed midway: an error event, which the SDK raises
            # as an APIError, so a client can tell a truncated answer from a complete one.
            error = _broken_off(call, broken, usage)
            await emit(reader.broken_tail(error, typed=call.surface.typed_events), False)
    finally:
        call.gateway.stream_closed()  # no await before the spawn: shutdown sees one or the other
        if not recorded:
            # Cancelled (client gone): anything awaited here would be cancelled again, so the
            # close and the metering run as their own task, awaited at shutdown.
            call.gateway.spawn(_close_and_record(call, upstream, reader))
        else:
            await upstream.aclose()


async def _record(call: MeteredCall, reader: SSEReader) -> TokenUsage:
    usage = reader.usage() or await call.estimate(reader.texts())
    await call.record(usage)
    return usage


def _broken_off(call: MeteredCall, exc: httpx.HTTPError, usage: TokenUsage) -> dict[str, Any]:
    """The OpenAI ``error`` object for a stream the upstream broke off (logged once)."""
    name = call.route.upstream_name
    log.warning(
        "upstream %r broke off the stream of request %s (%s); its usage is metered (%s)",
        name,
        call.request_id,
        type(exc).__name__,
        usage.source,
    )
    timeout = isinstance(exc, httpx.TimeoutException)
    failure = GatewayError(
        "upstream_timeout" if timeout else "upstream_unavailable",
        f"The upstream '{name}' {'stopped answering' if timeout else 'broke off'} in the middle "
        f"of the stream ({type(exc).__name__}): the answer is incomplete.",
        code="upstream_timeout" if timeout else "upstream_stream_interrupted",
    )
    _, document, _ = openai_error(failure)
    error: dict[str, Any] = document["error"]
    return error


async def _close_and_record(
    call: MeteredCall, upstream: UpstreamResponse, reader: SSEReader
) -> None:
    await upstream.aclose()
    await _record(call, reader)
