"""The composition root: the only place that names concrete adapters and wires the gateway."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from config import Settings
from metering.errors import StoreBroken, StoreUnavailable
from metering.ports import Store
from metering.service import MeteringService
from metering.store.postgres import PostgresStore
from metering.store.sqlite import SQLiteStore
from metering.writer import EventWriter
from proxy.auth import KeyAuthenticator
from proxy.authorization import refuse_repeated_authorization
from proxy.catalog import ensure_default_catalog
from proxy.errors import exception_handlers
from proxy.hot_path import GatewayApp
from proxy.lago import lago_router
from proxy.lago.openapi import document_admin_api
from proxy.openapi_proxied import document_openai_api
from proxy.request_id import ensure_request_id
from proxy.routes import admin as admin_routes
from proxy.routes import openai as openai_routes
from proxy.routes.health import healthz, readyz
from proxy.routes.usage import key_usage
from proxy.startup import StartupFailed
from proxy.state import Clock, Gateway, system_clock
from proxy.tokens import TokenCounter
from proxy.unwritten import UnwrittenReport
from proxy.upstream import UpstreamRouter
from proxy.upstream_client import UpstreamClient
from proxy.upstream_tls import ssl_contexts
from proxy.upstream_transport import UpstreamTransport

__all__ = [
    "create_app",
    "describe_store",
    "is_postgres",
    "open_checked",
    "open_store",
    "sqlite_path",
]

log = logging.getLogger("tallygate")

#: Event properties rolled up next to the metric's filter keys, so per-key usage stays cheap.
ROLLUP_EXTRA_KEYS = ("key_id",)


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///<path>`` URL (``sqlite:////abs`` for absolute paths)."""
    return Path(url.removeprefix("sqlite:///"))


def is_postgres(url: str) -> bool:
    """Whether ``store.url`` names PostgreSQL (``postgresql://`` or ``postgres://``)."""
    return url.startswith(("postgresql://", "postgres://"))


def describe_store(url: str) -> str:
    """The store for humans: the SQLite file, or PostgreSQL's host (never its password)."""
    return f"postgresql on {url.rpartition('@')[2]}" if is_postgres(url) else str(sqlite_path(url))


def _log_broken(reason: str) -> None:
    # Once per store, when it finds itself broken while serving (the store's own message
    # says what is wrong and what to do).
    log.error("usage store broken; refusing requests until it is repaired: %s", reason)


def open_store(settings: Settings) -> Store:
    """The store ``settings.store.url`` names (not yet opened): SQLite file or PostgreSQL."""
    url = settings.store.url
    if is_postgres(url):
        return PostgresStore(
            url,
            rollup_extra_keys=ROLLUP_EXTRA_KEYS,
            statement_timeout=settings.store.statement_timeout_seconds,
            connect_timeout=settings.store.connect_timeout_seconds,
            ping_timeout=settings.store.ping_timeout_seconds,
        )
    return SQLiteStore(
        sqlite_path(url),
        rollup_extra_keys=ROLLUP_EXTRA_KEYS,
        busy_timeout=settings.store.busy_timeout_seconds,
        integrity_check=settings.store.check_integrity_at_start,
        on_broken=_log_broken,
    )


async def open_checked(store: Store, url: str) -> None:
    """Open the store (``url`` is where it is); StartupFailed, one line saying what is wrong
    and what to do, when it cannot be opened."""
    try:
        await store.open()
    except StoreUnavailable as exc:
        where = describe_store(url)
        line = (
            f"cannot open the store: {exc}"
            if where in str(exc)
            else f"cannot open the store ({where}): {exc}"
        )
        if not isinstance(exc, StoreBroken):
            # Unreachable or locked: nothing in the message says what to do yet.
            line += (
                "; check that it is reachable (and not locked by another program), then start again"
            )
        raise StartupFailed(line) from exc


def _warn_unconfigured(settings: Settings) -> None:
    for name, upstream in settings.upstreams.items():
        if upstream.api_key_env and not settings.secret(upstream.api_key_env):
            log.warning(
                "upstream %r has no API key: set %s; until then its models answer 503",
                name,
                upstream.api_key_env,
            )


def _upstream_client(
    settings: Settings, transport: httpx.AsyncBaseTransport | None
) -> UpstreamClient:
    """The lean transport, called directly, unless a test hands in its own transport or the
    environment names an HTTP(S) proxy: then through an httpx client (which mounts proxies).

    bench/RESULTS.md: httpx's default transport cost the gateway more CPU than everything else
    together, and httpx's client layers around the lean one still a third of the rest.
    """
    if transport is None:
        lean = UpstreamTransport(ssl_contexts=ssl_contexts(settings.upstreams))
        if not urllib.request.getproxies():
            return UpstreamClient(lean)
        transport = lean
    return UpstreamClient(
        httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    transport: httpx.AsyncBaseTransport | None = None,
    preload_tokenizers: bool = False,
) -> Litestar:
    """Build the gateway app. ``transport`` replaces the upstream network (tests, respx).

    ``preload_tokenizers`` (``tallygate serve``) loads the served models' tiktoken encodings
    during start-up rather than at the first estimated answer: parsing one takes about 0.8 s,
    mostly holding the GIL, which would stall every request in flight then, and the process
    reaches its steady memory (about 48 MiB per encoding) before any traffic.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        _warn_unconfigured(settings)
        store = open_store(settings)
        await open_checked(store, settings.store.url)
        unwritten = UnwrittenReport()
        writer = EventWriter(
            store, max_pending=settings.store.max_pending_events, on_unwritten=unwritten
        )
        try:
            await writer.start()
            await ensure_default_catalog(store, settings, clock())
            http = _upstream_client(settings, transport)
            try:
                app.state.gateway = gateway = Gateway(
                    settings=settings,
                    store=store,
                    writer=writer,
                    service=MeteringService(store, premium=settings.metering.premium),
                    auth=KeyAuthenticator(store, cache_ttl=settings.server.key_cache_seconds),
                    router=UpstreamRouter(settings),
                    http=http,
                    tokens=TokenCounter(),
                    clock=clock,
                )
                if preload_tokenizers:
                    tokens = gateway.tokens
                    names = {tokens.encoding_name_for(model).name for model in settings.models}
                    await asyncio.to_thread(tokens.preload, sorted(names))
                try:
                    yield
                finally:
                    gateway.begin_shutdown()
                    # Metering of cancelled streams still running: finish before the writer.
                    await gateway.drain_background()
            finally:
                await http.aclose()
        finally:
            # The writer drains its queue before the store closes: no accepted usage is lost,
            # unless the store still fails at the deadline: then each batch is reported.
            await writer.stop(give_up_after=settings.server.shutdown_grace_seconds)
            unwritten.summarize()
            await store.close()

    # The proxied endpoints are served in front of Litestar (proxy.hot_path), the rest by it.
    app = GatewayApp(
        route_handlers=[
            healthz,
            readyz,
            *openai_routes.ROUTES,
            key_usage,
            lago_router(),
            *admin_routes.ROUTES,
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        before_send=[ensure_request_id],
        middleware=[refuse_repeated_authorization],
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=OpenAPIConfig(title="tallygate", version="0.1.0", path="/schema"),
        debug=False,
        # Logging belongs to the process (``tallygate serve`` sets it up); Litestar's default
        # would replace the root logger's handlers of whatever process embeds the app.
        logging_config=None,
    )
    app.server_settings = settings.server  # the connection limits, for proxy.http_protocol
    document_admin_api(app.openapi_schema)  # what the Lago handlers read by hand
    document_openai_api(app.openapi_schema)  # the proxied endpoints, served before Litestar
    return app
