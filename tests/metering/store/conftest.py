"""The store contract fixture: every test taking ``store`` runs once per adapter.

A new adapter joins the whole suite by adding one entry to ``ADAPTERS``. PostgreSQL runs in a
schema of its own per test (``tests.support.postgres``), skipped when no server is reachable
unless ``CI`` is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from metering.ports import Store
from metering.store.memory import MemoryStore
from metering.store.postgres import PostgresStore
from metering.store.sqlite import SQLiteStore
from tests.support.postgres import fresh_schema

#: Extra rollup keys the SQL stores are built with, as the gateway does.
EXTRA_KEYS = ("key_id",)


@contextlib.asynccontextmanager
async def _memory(_tmp: Path) -> AsyncIterator[Store]:
    yield MemoryStore()


@contextlib.asynccontextmanager
async def _sqlite(tmp: Path) -> AsyncIterator[Store]:
    yield SQLiteStore(tmp / "tallygate.db", rollup_extra_keys=EXTRA_KEYS)


@contextlib.asynccontextmanager
async def _postgres(_tmp: Path) -> AsyncIterator[Store]:
    async with fresh_schema() as url:
        yield PostgresStore(url, rollup_extra_keys=EXTRA_KEYS, max_connections=4)


ADAPTERS: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(ADAPTERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each adapter, closed after the test."""
    async with ADAPTERS[request.param](tmp_path) as adapter:
        await adapter.open()
        try:
            yield adapter
        finally:
            await adapter.close()


@pytest.fixture(params=["metric-first", "metric-after", "no-metric"])
def metric_timing(request: pytest.FixtureRequest) -> str:
    """When the test stores the metric: before its events, after them, or never."""
    return str(request.param)
