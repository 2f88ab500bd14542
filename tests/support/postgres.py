"""PostgreSQL for tests: a fresh schema per test (created, then dropped), or a clean skip.

The server is ``TALLYGATE_TEST_PG_URL`` (default: the local trust-auth server). When it is
unreachable, tests skip with the reason, except when ``CI`` is set: then they fail, since
``.ci/run`` starts the server and a silent skip would hide the whole PostgreSQL suite.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

PG_URL = os.environ.get("TALLYGATE_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")


def schema_url(schema: str, base: str = PG_URL) -> str:
    """``base`` with ``search_path`` set to ``schema`` (asyncpg passes it as a server setting)."""
    parts = urlsplit(base)
    query = "&".join(q for q in (parts.query, urlencode({"search_path": schema})) if q)
    return urlunsplit(parts._replace(query=query))


async def _connect() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable at {PG_URL} ({exc}); set TALLYGATE_TEST_PG_URL"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so PostgreSQL tests must run")
        pytest.skip(reason)


async def require_postgres() -> None:
    """Skip the test (fail with ``CI`` set) unless the test server answers."""
    conn = await _connect()
    await conn.close()


async def create_schema(prefix: str = "tg_test") -> str:
    """Create a new empty schema; returns its name."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await _connect()
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    return schema


async def drop_schema(schema: str) -> None:
    """Drop a schema made by :func:`create_schema`, with everything in it."""
    admin = await _connect()
    try:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_schema(prefix: str = "tg_test") -> AsyncIterator[str]:
    """A new empty schema's URL (``search_path`` set), dropped with everything in it after."""
    schema = await create_schema(prefix)
    try:
        yield schema_url(schema)
    finally:
        await drop_schema(schema)
