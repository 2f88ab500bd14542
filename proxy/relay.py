"""Streaming relay: include_usage injected upstream, chunks forwarded as they arrive, usage
committed before the stream's final event, and metered even when the stream breaks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import httpx

from proxy.metered_call import MeteredCall
from proxy.request_head import RequestHead, with_stream_usage
from proxy.sse import SSEReader
from proxy.upstream import send_upstream
from proxy.upstream_transport import UpstreamResponse

__all__ = ["Emit", "open_stream", "relay_stream"]


def _rejects_stream_options(status: int, body: bytes) -> bool:
    return status == 400 and b"stream_options" in body


async def open_stream(
    call: MeteredCall, head: RequestHead, headers: Mapping[str, str]
) -> tuple[UpstreamResponse, SSEReader]:
    """Send the streaming request upstream (with ``include_usage`` unless the upstream is
    known to refuse it) and return the open response and the reader for its events."""
    gateway, route = call.gateway, call.route
    asked = head.stream_options is not None and head.stream_options.include_usage is True
    inject = (
        call.surface.injects_usage and route.upstream_name not in gateway.rejects_stream_options
    )
    # A client that asked for usage already sends what would be injected: its bytes go as they are.
    body = with_stream_usage(call.body) if inject and not asked else call.body
    upstream = await _send(call, body, headers)
    # Only a body whose stream_options are all ours can tell that the upstream refuses the
    # parameter: a 400 about the client's own stream_options is the client's to see, and must
    # not switch injection off for every other client of this upstream.
    if inject and head.stream_options is None and upstream.status_code == 400:
        content = await upstream.aread()
        await upstream.aclose()
        if not _rejects_stream_options(400, content):
            return upstream, SSEReader(strip_usage=not asked)
        # Fail open, once per upstream: it will be metered by the fallback from now on.
        gateway.rejects_stream_options.add(route.upstream_name)
        upstream = await _send(call, call.body, headers)
    return upstream, SSEReader(strip_usage=not asked)


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
        try:
            async for piece in upstream.aiter_raw():
                out = reader.feed(piece)
                if out:
                    await emit(out, True)
        except httpx.HTTPError:
            # Upstream cut, reset or timed out mid-stream: end the client's stream cleanly
            # after metering what was produced (OpenAI's SDK reports a truncated stream).
            pass
        await _record(call, reader)
        recorded = True
        # [DONE] (or the terminal event) goes with the end of the response: one write.
        await emit(reader.tail(), False)
    finally:
        call.gateway.stream_closed()  # no await before the spawn: shutdown sees one or the other
        if not recorded:
            # Cancelled (client gone): anything awaited here would be cancelled again, so the
            # close and the metering run as their own task, awaited at shutdown.
            call.gateway.spawn(_close_and_record(call, upstream, reader))
        else:
            await upstream.aclose()


async def _record(call: MeteredCall, reader: SSEReader) -> None:
    usage = reader.usage() or await call.estimate(reader.texts())
    await call.record(usage)


async def _close_and_record(
    call: MeteredCall, upstream: UpstreamResponse, reader: SSEReader
) -> None:
    await upstream.aclose()
    await _record(call, reader)
