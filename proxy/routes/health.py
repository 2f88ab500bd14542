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
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The store answers and takes writes; 503 otherwise, so a load balancer stops sending
    traffic. A broken store (damaged, deleted or replaced file) says so; why is in the log.
    Also lists degradations that do not make it unready (see :func:`_degraded`)."""
    gateway: Gateway = request.app.state.gateway
    detail = _degraded(gateway)
    answers = await gateway.store.ping()  # a broken store may find out here
    if gateway.store.broken() is not None:
        return Response({"status": "store broken", **detail}, status_code=503)
    if gateway.writer.stalled:
        return Response({"status": "store failing writes", **detail}, status_code=503)
    if answers:
        return Response({"status": "ready", **detail})
    return Response({"status": "store unreachable", **detail}, status_code=503)


def _degraded(gateway: Gateway) -> dict[str, Any]:
    # Upstreams whose streams are metered by estimate, and until when (proxy.refusals).
    refusals = gateway.stream_options_refusals.in_force(gateway.clock)
    if not refusals:
        return {}
    return {"stream_options_refused_until": {name: t.isoformat() for name, t in refusals.items()}}
