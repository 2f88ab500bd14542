"""The PostgreSQL schema, versioned in ``schema_migrations`` and migrated at open.

Every replica migrates when it opens, under a session advisory lock keyed by the schema, so
replicas that start together apply each migration exactly once: the first takes the lock and
migrates, the others wait, then find nothing left to do. Each migration runs in its own
transaction together with the row that records it.

The layout follows the SQLite adapter's (``sqlite_schema``): records as msgspec JSON ``body``
with their looked-up columns, event timestamps as integer microseconds, rollup totals and
maxima as exact ``NUMERIC``.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from metering.errors import StoreBroken

__all__ = [
    "LOCK_CLASS",
    "MIGRATION_LOCK",
    "SCHEMA_VERSION",
    "SPEC_LOCK",
    "Conn",
    "lock_sql",
    "migrate",
]

#: A connection, plain or lent by the pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

#: First half of every advisory lock key the adapter takes (two-int form); the second half
#: identifies the lock within the schema (see ``_LOCK_OBJECT``).
LOCK_CLASS = 0x7A11
#: Serialises migrations (session lock, held while migrating).
MIGRATION_LOCK = 1
#: Rollup specs: event writes hold it shared, rollup rebuilds exclusively (transaction locks).
SPEC_LOCK = 2

# Migration N (1-based) brings a schema from version N-1 to N. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE metrics (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            code TEXT NOT NULL UNIQUE,
            created_us BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        """CREATE TABLE plans (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            code TEXT NOT NULL UNIQUE,
            created_us BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        """CREATE TABLE customers (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            external_id TEXT NOT NULL UNIQUE,
            created_us BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        """CREATE TABLE subscriptions (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            external_id TEXT NOT NULL,
            external_customer_id TEXT NOT NULL,
            plan_code TEXT NOT NULL,
            status TEXT NOT NULL,
            created_us BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        "CREATE INDEX subscriptions_external_id ON subscriptions (external_id, created_us)",
        "CREATE INDEX subscriptions_customer ON subscriptions (external_customer_id)",
        """CREATE TABLE api_keys (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            key_hash TEXT NOT NULL UNIQUE,
            created_us BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        # The UNIQUE constraint is the idempotency key (design.md section 5); transaction
        # first, so it also serves lookups by transaction id alone.
        """CREATE TABLE events (
            seq BIGSERIAL PRIMARY KEY,
            transaction_id TEXT NOT NULL,
            external_subscription_id TEXT NOT NULL,
            code TEXT NOT NULL,
            ts BIGINT NOT NULL,
            created_us BIGINT NOT NULL,
            id TEXT NOT NULL,
            properties TEXT NOT NULL,
            precise_total_amount_cents TEXT,
            CONSTRAINT events_identity UNIQUE (transaction_id, external_subscription_id))""",
        "CREATE INDEX events_stream ON events (external_subscription_id, code, ts)",
        """CREATE TABLE rollup_specs (
            code TEXT PRIMARY KEY,
            field_name TEXT,
            keys TEXT NOT NULL)""",
        # grain is the bucket length in microseconds (hours and days side by side).
        """CREATE TABLE rollups (
            code TEXT NOT NULL,
            external_subscription_id TEXT NOT NULL,
            grain BIGINT NOT NULL,
            bucket BIGINT NOT NULL,
            dims TEXT NOT NULL,
            events BIGINT NOT NULL,
            numeric_events BIGINT NOT NULL,
            total NUMERIC NOT NULL,
            maximum NUMERIC,
            PRIMARY KEY (code, external_subscription_id, grain, bucket, dims))""",
    ),
    # 2: values outside the numeric domain (metering.values) no longer count. Rollups an older
    # version summed them into are rebuilt from the raw events at open (one pass, once).
    (
        "DELETE FROM rollups",
        "DELETE FROM rollup_specs",
    ),
)

#: The schema version this code writes and expects.
SCHEMA_VERSION = len(_MIGRATIONS)

_LOCK_OBJECT = "hashtext(current_schema())"


async def migrate(conn: Conn) -> int:
    """Bring the connection's schema to :data:`SCHEMA_VERSION`; returns the old version.

    A schema that the ``search_path`` names but that does not exist yet is created first.

    Raises StoreBroken for a schema written by a newer tallygate (never downgrade silently).
    """
    if await conn.fetchval("SELECT current_schema()") is None:
        await _create_schema(conn)
    await conn.execute(f"SELECT pg_advisory_lock({LOCK_CLASS} + {MIGRATION_LOCK}, {_LOCK_OBJECT})")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = int(
            await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        )
        if current > SCHEMA_VERSION:
            raise StoreBroken(
                f"database schema version {current} is newer than this tallygate's "
                f"({SCHEMA_VERSION}); upgrade tallygate"
            )
        for version, statements in enumerate(_MIGRATIONS[current:], start=current + 1):
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
    finally:
        await conn.execute(
            f"SELECT pg_advisory_unlock({LOCK_CLASS} + {MIGRATION_LOCK}, {_LOCK_OBJECT})"
        )
    return current


async def _create_schema(conn: Conn) -> None:
    """Create the first schema the connection's ``search_path`` names (none exists yet);
    StoreBroken if the role may not, or the path names none."""
    path = str(await conn.fetchval("SHOW search_path"))
    names = [part.strip() for part in path.split(",") if part.strip() not in ("", '"$user"')]
    if not names:
        raise StoreBroken(f"the store's search_path ({path}) names no schema: set one in store.url")
    # parse_ident: the server's own reading of a (possibly quoted) identifier.
    parts = await conn.fetchval("SELECT parse_ident($1)", names[0])
    name = str(parts[-1])
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    except asyncpg.PostgresError as exc:
        raise StoreBroken(
            f"the schema {name} of the store's search_path does not exist and cannot be "
            f"created ({exc}): create it with a role allowed to (CREATE SCHEMA {quoted}), "
            f"or name an existing schema in store.url"
        ) from exc
    if await conn.fetchval("SELECT current_schema()") is None:
        raise StoreBroken(f"the store's search_path ({path}) names no usable schema")


def lock_sql(lock: int, *, shared: bool) -> str:
    """The statement taking transaction advisory lock ``lock`` of the current schema."""
    kind = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    return f"SELECT {kind}({LOCK_CLASS} + {lock}, {_LOCK_OBJECT})"
