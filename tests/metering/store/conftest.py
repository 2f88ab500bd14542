"""The store contract fixture: every test taking ``store`` runs once per adapter.

A new adapter (Postgres) joins the whole suite by adding one entry to ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from metering.ports import Store
from metering.store.memory import MemoryStore
from metering.store.sqlite import SQLiteStore

#: Extra rollup keys the SQLite store is built with, as the gateway does.
EXTRA_KEYS = ("key_id",)

ADAPTERS: dict[str, Callable[[Path], Store]] = {
    "memory": lambda _tmp: MemoryStore(),
    "sqlite": lambda tmp: SQLiteStore(tmp / "tallygate.db", rollup_extra_keys=EXTRA_KEYS),
}


@pytest.fixture(params=sorted(ADAPTERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened, empty store of each adapter, closed after the test."""
    adapter = ADAPTERS[request.param](tmp_path)
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture(params=["metric-first", "metric-after", "no-metric"])
def metric_timing(request: pytest.FixtureRequest) -> str:
    """When the test stores the metric: before its events, after them, or never."""
    return str(request.param)
