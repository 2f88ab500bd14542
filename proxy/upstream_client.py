"""How the gateway sends its upstream requests: one ``send`` for the hot path.

In production it goes straight to :meth:`UpstreamTransport.exchange` (no httpx request,
response, headers or client layers: they were a third of the gateway's main-thread CPU per
request, bench/RESULTS.md). With a transport handed in (tests: ``httpx.MockTransport``,
``httpx.ASGITransport``) or an HTTP(S) proxy configured in the environment, the same call goes
through an ``httpx.AsyncClient`` instead, so httpx's boundary (mock transports, respx, proxy
mounts) keeps working. Errors are httpx's either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from proxy.upstream_transport import Timeouts, UpstreamResponse, UpstreamTransport

__all__ = ["UpstreamClient"]


class UpstreamClient:
    """Sends POSTs upstream and returns :class:`UpstreamResponse` with the body unread."""

    def __init__(self, via: UpstreamTransport | httpx.AsyncClient) -> None:
        """``via``: the lean transport itself, or an httpx client to go through."""
        self._via = via

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        """POST ``body`` to ``url``; returns once the status and headers are in."""
        via = self._via
        if isinstance(via, UpstreamTransport):
            return await via.exchange(url, headers.items(), body, timeouts)
        request = via.build_request(
            "POST", url, content=body, headers=headers, timeout=httpx.Timeout(**timeouts)
        )
        response = await via.send(request, stream=True)
        return UpstreamResponse(
            response.status_code, response.headers.raw, _body(response), response.aclose
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._via.aclose()


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        # A response built in memory (mock transports) has its content already.
        content = response.content
    except httpx.ResponseNotRead:
        async for piece in response.aiter_raw():
            yield piece
    else:
        if content:
            yield content
