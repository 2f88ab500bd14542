"""PostgreSQL for the benchmarks: a schema per data set on a local server, and its store.

``--pg-url`` of each benchmark names the server (default: the local trust-auth one); data sets
live in schemas named by the benchmark, created on demand and dropped when rebuilt.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from metering.store.postgres import PostgresStore

__all__ = ["DEFAULT_URL", "drop_schema", "ensure_schema", "pg_store", "schema_exists", "schema_url"]

DEFAULT_URL = "postgresql://root@127.0.0.1:5432/test"
ROLLUP_EXTRA_KEYS = ("key_id",)  # as proxy.app


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``search_path`` set to ``schema``."""
    parts = urlsplit(base)
    query = "&".join(q for q in (parts.query, urlencode({"search_path": schema})) if q)
    return urlunsplit(parts._replace(query=query))


async def _admin(base: str, sql: str) -> object:
    conn = await asyncpg.connect(base)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def schema_exists(base: str, schema: str) -> bool:
    """Whether ``schema`` exists on the server."""
    found = await _admin(
        base,
        f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'",  # noqa: S608
    )
    return found == 1


async def ensure_schema(base: str, schema: str, *, fresh: bool) -> str:
    """Create ``schema`` (dropping an old one first if ``fresh``); returns its URL."""
    if fresh:
        await drop_schema(base, schema)
    await _admin(base, f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return schema_url(base, schema)


async def drop_schema(base: str, schema: str) -> None:
    """Drop ``schema`` and everything in it, if it exists."""
    await _admin(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_store(url: str) -> PostgresStore:
    """The gateway's PostgreSQL store on ``url``."""
    return PostgresStore(url, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
