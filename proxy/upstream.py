"""Routing a model to its upstream, and the request that goes there.

The upstream URL and key come only from the settings, never from the request. The client's
``Authorization`` and hop-by-hop headers are never forwarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import httpx
import msgspec

from config import ModelSettings, Settings, UpstreamSettings
from proxy.errors import GatewayError
from proxy.upstream_client import UpstreamClient
from proxy.upstream_transport import UntrustedCertificate, UpstreamResponse

__all__ = [
    "RETRIED_STATUSES",
    "ROUTED_RESPONSE_HEADERS",
    "Route",
    "UpstreamRouter",
    "send_upstream",
    "upstream_error",
]

# Client headers worth passing on; everything else (Authorization, Cookie, Host, hop-by-hop,
# tracing of the client's own infrastructure) stays at the gateway. OpenAI-Organization and
# OpenAI-Project choose whose account the upstream bills: only the operator's configuration
# (the upstream's ``organization`` / ``project``) sets them.
_FORWARDED_REQUEST_HEADERS = ("accept", "openai-beta")

#: Upstream response headers a client of OpenAI relies on (ids, rate limits, processing time).
ROUTED_RESPONSE_HEADERS = ("openai-", "x-ratelimit-", "retry-after")


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where one model's requests go."""

    model: str
    upstream_name: str
    upstream: UpstreamSettings
    upstream_model: str
    catalog: ModelSettings
    api_key: str | None
    #: Per-upstream timeouts: connect separately from the (long) read of a generation.
    timeouts: dict[str, float | None]


class UpstreamRouter:
    """Resolves public model names to routes, and builds upstream URLs and headers."""

    def __init__(self, settings: Settings) -> None:
        self._routes: dict[str, Route] = {}
        for name, model in settings.models.items():
            upstream = settings.upstreams[model.upstream]
            self._routes[name] = Route(
                model=name,
                upstream_name=model.upstream,
                upstream=upstream,
                upstream_model=model.upstream_model or name,
                catalog=model,
                api_key=settings.secret(upstream.api_key_env),
                timeouts={
                    "connect": upstream.connect_timeout,
                    "read": upstream.read_timeout,
                    "write": upstream.read_timeout,
                    "pool": upstream.connect_timeout,
                },
            )

    @property
    def models(self) -> Mapping[str, Route]:
        """Every routable public model name."""
        return self._routes

    def route(self, model: str) -> Route:
        """The route of a public model name; 404 ``model_not_found`` when it is not served."""
        found = self._routes.get(model)
        if found is None:
            raise GatewayError(
                "not_found",
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        return found

    def check_configured(self, route: Route) -> None:
        """Refuse clearly when the upstream's key variable is named but unset."""
        env = route.upstream.api_key_env
        if env and not route.api_key:
            raise GatewayError(
                "upstream_not_configured",
                f"The upstream '{route.upstream_name}' for model `{route.model}` has no API key: "
                f"set the environment variable {env} and restart tallygate.",
                code="upstream_not_configured",
            )

    def url(self, route: Route, endpoint: str) -> str:
        """The upstream URL of an OpenAI endpoint (``chat/completions``...) for this route."""
        base = route.upstream.base_url.rstrip("/")
        if route.upstream.kind == "azure":
            return (
                f"{base}/openai/deployments/{route.upstream_model}/{endpoint}"
                f"?api-version={route.upstream.api_version}"
            )
        return f"{base}/{endpoint}"

    def headers(self, route: Route, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Headers for the upstream request: the upstream's own auth, never the client's."""
        headers = {
            name: client_headers[name]
            for name in _FORWARDED_REQUEST_HEADERS
            if name in client_headers
        }
        headers["content-type"] = "application/json"
        upstream = route.upstream
        if upstream.organization:
            headers["openai-organization"] = upstream.organization
        if upstream.project:
            headers["openai-project"] = upstream.project
        headers.update(upstream.headers)
        if route.api_key:
            if route.upstream.kind == "azure":
                headers["api-key"] = route.api_key
            else:
                headers["authorization"] = f"Bearer {route.api_key}"
        return headers


def upstream_error(route: Route, exc: httpx.HTTPError) -> GatewayError:
    """A client-safe error for a failed upstream call (no URL credentials, no key)."""
    name = route.upstream_name
    if isinstance(exc, UntrustedCertificate):
        return GatewayError(
            "upstream_unavailable",
            f"The upstream '{name}' could not be reached: its TLS certificate is not trusted.",
            code="upstream_unavailable",
        )
    if isinstance(exc, httpx.TimeoutException):
        return GatewayError(
            "upstream_timeout",
            f"The upstream '{name}' did not answer in time ({type(exc).__name__}).",
            code="upstream_timeout",
        )
    return GatewayError(
        "upstream_unavailable",
        f"The upstream '{name}' could not be reached ({type(exc).__name__}).",
        code="upstream_unavailable",
    )


log = logging.getLogger("tallygate.upstream")

#: Answers that mean "nothing was done, try again" (a gateway or overload in front of the model).
RETRIED_STATUSES = frozenset({502, 503, 504})
# Failures before the request reached the upstream: it produced nothing, so a retry is safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def send_upstream(
    client: UpstreamClient,
    route: Route,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    stream: bool,
) -> UpstreamResponse:
    """POST ``body`` to ``url``, retrying up to ``retries`` times what produced nothing: a failed or
    timed-out connection, or a 502/503/504 answer. Nothing has reached the client yet when this
    returns, so a retry can never duplicate output; read timeouts and failures after the answer
    began are never retried (the upstream may have generated tokens). Transport failures and
    a 401 (the gateway's own key refused) become a client-safe :class:`GatewayError`; any other
    last answer, even a 5xx, is returned; with ``stream=False`` its body is read.
    """
    upstream = route.upstream
    for attempt in range(upstream.retries + 1):
        last = attempt == upstream.retries
        try:
            response = await client.send(url, headers, body, route.timeouts)
            if not stream:
                await response.aread()
        except UntrustedCertificate as exc:
            # Not retried (the same certificate comes back); the operator's to fix.
            log.error(
                "upstream %r: %s; name the CA that signed it in upstreams.%s.ca_bundle",
                route.upstream_name,
                exc,
                route.upstream_name,
            )
            raise upstream_error(route, exc) from None
        except _NOT_SENT as exc:
            if last:
                raise upstream_error(route, exc) from None
        except httpx.HTTPError as exc:
            raise upstream_error(route, exc) from None
        else:
            if response.status_code == 401:
                # The gateway's own credentials were refused: a misconfiguration to report to
                # the operator, not the client (whose key was fine), and the upstream's message
                # may quote part of the key.
                await response.aclose()
                log.error("upstream %r refused the gateway's API key (401)", route.upstream_name)
                raise GatewayError(
                    "upstream_unavailable",
                    f"The upstream '{route.upstream_name}' refused the gateway's credentials.",
                    code="upstream_auth_failed",
                )
            if last or response.status_code not in RETRIED_STATUSES:
                return response
            await response.aclose()
        await asyncio.sleep(upstream.retry_backoff_seconds * (attempt + 1))
    raise AssertionError("unreachable: the last attempt returns or raises")
