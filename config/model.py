"""The settings tree. Plain data: no I/O, no environment reads, no behaviour beyond lookups."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

__all__ = [
    "AdminSettings",
    "MeteringSettings",
    "ModelSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "UpstreamSettings",
]


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the gateway listens and how much it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Request bodies above this are refused with 413 before being read whole.
    max_body_bytes: int = 16 * 1024 * 1024
    #: Seconds a key record is served from the in-process cache before it is read again: a
    #: key revoked by another replica (or ``tallygate keys revoke``) stops working within this.
    key_cache_seconds: float = 5.0
    #: On SIGTERM/SIGINT, how long in-flight requests (streams) may run before they are cut;
    #: their usage is metered either way, then the event queue drains and the process exits 0.
    #: Writes to a store that still fails are given up a second before it ends: each request's
    #: unwritten usage is logged as "usage not stored" with its events, never waited on forever.
    shutdown_grace_seconds: int = 30
    #: The request line and headers of one request together: past this, 431 and the
    #: connection is closed (before authentication, so it bounds what any client can make the
    #: gateway hold).
    max_header_bytes: int = 64 * 1024
    #: Header lines in one request: past this, 431.
    max_headers: int = 100
    #: The request target (path and query) of the request line: past this, 414.
    max_request_line_bytes: int = 8 * 1024
    #: Seconds a connection may take to send a request's line and headers, counted from the
    #: connection's start or the end of the previous answer: then 408 and the connection is
    #: closed (a connection that sent nothing is closed quietly). Slow-header clients
    #: (slowloris) hold a connection no longer than this.
    header_timeout_seconds: float = 20.0
    #: Seconds a request's whole body may take to arrive once its headers are in: then 408
    #: and the connection is closed. Raise it for clients that upload large bodies slowly.
    body_timeout_seconds: float = 60.0
    #: Seconds an idle kept-alive connection stays open after an answer.
    keep_alive_seconds: float = 5.0


class StoreSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where usage and billing records live: ``sqlite:///<path>`` (a relative path is relative
    to the working directory), or ``postgresql://user@host:port/db`` shared by replicas
    (``?search_path=<schema>`` picks a schema other than ``public``)."""

    url: str = "sqlite:///./tallygate.db"
    #: SQLite: how long one write waits for another process's lock before the store counts
    #: as stalled (its writes are then retried and new requests refused with 503).
    busy_timeout_seconds: float = 5.0
    #: Usage events held in memory while the store is slow or stalled; past this (or while a
    #: write keeps failing) new requests are refused with 503 + Retry-After, never dropped.
    max_pending_events: int = 10000
    #: SQLite: check the whole file (``PRAGMA quick_check``) when the gateway starts, and
    #: refuse to start on a damaged one, rather than find the damage after an upstream call.
    #: It reads every page (about as long as reading the file from disk): turn it off for very
    #: large files. Damage found while serving still takes the gateway out of service.
    check_integrity_at_start: bool = True
    #: PostgreSQL: seconds one statement may go unanswered (a hung server, a dead network path)
    #: before it fails and the store counts as unavailable: writes are rolled back and retried
    #: (new requests get 503 meanwhile), reads answer 503. Long enough for a busy database.
    statement_timeout_seconds: float = 30.0
    #: PostgreSQL: seconds to open a connection (TCP, TLS and login) before it counts as failed.
    connect_timeout_seconds: float = 10.0
    #: PostgreSQL: seconds ``/readyz`` waits for the server's answer before it says 503.
    ping_timeout_seconds: float = 5.0


class UpstreamSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An LLM provider the gateway forwards to. ``api_key_env`` names the variable holding its
    key; the key itself is never written in a config file."""

    base_url: str
    api_key_env: str | None = None
    #: ``openai``: Bearer auth, ``/v1/...`` paths. ``azure``: ``api-key`` header, deployment
    #: paths and an ``api-version`` query.
    kind: Literal["openai", "azure"] = "openai"
    api_version: str | None = None
    #: A PEM file of the CA certificates to trust for this upstream's TLS (a private or test
    #: CA) instead of the default bundle; a relative path is relative to the working directory.
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    #: Extra attempts after a failure that produced nothing (connection refused or timed out,
    #: 502/503/504), made only before any byte reached the client.
    retries: int = 1
    #: Pause before retry n: ``n * retry_backoff_seconds``.
    retry_backoff_seconds: float = 0.2
    #: Seconds the gateway remembers that this upstream refused the ``stream_options`` it
    #: injects to meter streams exactly (its streams are metered by estimate meanwhile); then
    #: it injects again. 0: never remember (each refused stream is sent twice).
    stream_options_refusal_seconds: float = 3600.0
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    #: Sent as ``OpenAI-Organization`` / ``OpenAI-Project``: which of the operator's
    #: organizations and projects this upstream's calls are billed to. A client's own
    #: headers of these names are never forwarded (they would let a client choose who pays).
    organization: str | None = None
    project: str | None = None


class ModelSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A served model: where it goes and what its tokens cost (USD per 1M tokens).

    ``cached_input_per_1m`` defaults to the input price (no cache discount known).
    """

    upstream: str = "openai"
    #: The upstream's own name when the public name is an alias.
    upstream_model: str | None = None
    kind: Literal["chat", "embedding"] = "chat"
    input_per_1m: Decimal
    cached_input_per_1m: Decimal | None = None
    output_per_1m: Decimal | None = None
    #: tiktoken encoding for the fallback count when the upstream reports no usage.
    encoding: str | None = None


class MeteringSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How proxied usage becomes billing events, and the default plan built from the catalog."""

    metric_code: str = "llm_tokens"
    metric_name: str = "LLM tokens"
    field_name: str = "tokens"
    model_property: str = "model"
    type_property: str = "type"
    #: Emit cached prompt tokens as their own ``cached_input`` type (priced separately).
    split_cached_input: bool = True
    plan_code: str = "llm_default"
    plan_name: str = "LLM usage (per 1,000 tokens)"
    plan_interval: Literal["weekly", "monthly", "quarterly", "semiannual", "yearly"] = "monthly"
    currency: str = "USD"
    #: The seed prices packages of 1,000 tokens; ``standard`` prices each token exactly.
    charge_model: Literal["package", "standard"] = "package"
    package_size: int = 1000
    #: Lago's premium-only behaviour (percentage min/max, graduated_percentage).
    premium: bool = False


class AdminSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Lago-compatible admin API (``/api/v1``): its Bearer key comes from ``api_key_env``."""

    api_key_env: str = "TALLYGATE_ADMIN_KEY"


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything the gateway needs to start. ``secrets`` holds the values of the environment
    variables that the settings name (filled by the loader, masked when printed)."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    upstreams: dict[str, UpstreamSettings] = msgspec.field(default_factory=dict)
    models: dict[str, ModelSettings] = msgspec.field(default_factory=dict)
    metering: MeteringSettings = msgspec.field(default_factory=MeteringSettings)
    admin: AdminSettings = msgspec.field(default_factory=AdminSettings)
    secrets: dict[str, str] = msgspec.field(default_factory=dict)

    def secret(self, env_name: str | None) -> str | None:
        """The value of a named secret variable, or ``None`` when it is unset or empty."""
        if not env_name:
            return None
        return self.secrets.get(env_name) or None
