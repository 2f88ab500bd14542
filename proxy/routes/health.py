"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from proxy.state import Gateway

__all__ = ["healthz", "readyz"]


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
    """The store answers and takes writes; 503 otherwise, so a load balancer stops sending
    traffic."""
    gateway: Gateway = request.app.state.gateway
    if gateway.writer.stalled:
        return Response({"status": "store failing writes"}, status_code=503)
    if await gateway.store.ping():
        return Response({"status": "ready"})
    return Response({"status": "store unreachable"}, status_code=503)
