"""``MeteringService.current_usage`` latency against the period's event count (design.md section 6).

For each size (default 10k, 100k, 1M events in the current period) a SQLite file holds one
subscription on the seed plan ``llm_default`` (one charge, one filter per model and type) with
4 keys, its events spread from the start of the month to the build time. The files are cached
under ``bench/out/usage-<size>.db`` (+ ``.json``: build time, a key's secret), so reruns skip
the build; the build writes through ``SQLiteStore.write_batches`` in big batches.

``now`` is the build time of the file, so the period, and the cost, stay the same on reruns.
Measured per size: ``current_usage`` of the subscription, the same restricted to one key
(``only=("key_id", ...)``), and ``GET /v1/usage`` through a real gateway on loopback (which
makes both calls and renders JSON) with an httpx client in the same process.

``--store postgres`` measures the PostgreSQL store instead: each data set lives in schema
``bench_usage_<size>`` on ``--pg-url`` (sidecar ``bench/out/pg-usage-<size>.json``), built the
same way (``PostgresStore.write_batches``).

Run from the repo root: ``python -m bench.current_usage [--sizes 10000 100000 1000000]
[--store sqlite|postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import msgspec

if __package__ in (None, ""):  # run as ``python bench/current_usage.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    CUSTOMER,
    SUBSCRIPTION,
    EventFactory,
    machine_info,
    month_start,
    percentile,
    settings,
)
from bench.pg import DEFAULT_URL, ensure_schema, pg_store, schema_exists, schema_url
from config import Settings
from metering.ports import Store
from metering.service import MeteringService
from metering.store.sqlite import SQLiteStore
from proxy.app import ROLLUP_EXTRA_KEYS, create_app
from proxy.background import BackgroundServer
from proxy.key_admin import issue_key

OUT = Path(__file__).resolve().parent / "out"
FORMAT = 1  # bump when the data set's shape changes, to rebuild cached files
KEYS = 4
CHUNK_BATCHES = 10  # batches per write_batches call (one transaction)
CHUNK_BATCH_SIZE = 5000  # events per batch while building


class DataSet(msgspec.Struct, frozen=True, kw_only=True):
    """A cached file's description (its ``.json`` sidecar)."""

    format: int
    size: int
    built_at: datetime
    build_seconds: float
    key_ids: tuple[str, ...]
    key_secret: str  # the first key's secret, for GET /v1/usage (bench data only)


def _paths(size: int) -> tuple[Path, Path]:
    return OUT / f"usage-{size}.db", OUT / f"usage-{size}.json"


class Backend:
    """Where the data sets live: SQLite files under ``bench/out`` or PostgreSQL schemas."""

    def __init__(self, kind: str, pg_url: str) -> None:
        self.kind = kind
        self.pg_url = pg_url

    def meta(self, size: int) -> Path:
        return _paths(size)[1] if self.kind == "sqlite" else OUT / f"pg-usage-{size}.json"

    def schema(self, size: int) -> str:
        return f"bench_usage_{size}"

    def url(self, size: int) -> str:
        """The gateway's ``store.url`` for the data set."""
        if self.kind == "sqlite":
            return f"sqlite:///{_paths(size)[0]}"
        return schema_url(self.pg_url, self.schema(size))

    async def exists(self, size: int) -> bool:
        if self.kind == "sqlite":
            return _paths(size)[0].exists()
        return await schema_exists(self.pg_url, self.schema(size))

    async def fresh_store(self, size: int) -> Store:
        """An empty store for a new data set (the old one removed)."""
        if self.kind == "sqlite":
            db = _paths(size)[0]
            for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                stale.unlink(missing_ok=True)
            return SQLiteStore(db, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
        return pg_store(await ensure_schema(self.pg_url, self.schema(size), fresh=True))

    def store(self, size: int) -> Store:
        """The store of an existing data set."""
        if self.kind == "sqlite":
            return SQLiteStore(_paths(size)[0], rollup_extra_keys=ROLLUP_EXTRA_KEYS)
        return pg_store(self.url(size))

    async def counts(self, size: int) -> tuple[int, int]:
        """(events, rollup rows) of the data set."""
        if self.kind == "sqlite":
            return _table_counts(_paths(size)[0])
        conn = await asyncpg.connect(self.url(size))
        try:
            events = await conn.fetchval("SELECT count(*) FROM events")
            rollups = await conn.fetchval("SELECT count(*) FROM rollups")
        finally:
            await conn.close()
        return int(events), int(rollups)


async def build(size: int, config: Settings, backend: Backend) -> DataSet:
    """Write a fresh data set of ``size`` events and return its description."""
    meta = backend.meta(size)
    meta.unlink(missing_ok=True)
    built_at = datetime.now(UTC)
    start = month_start(built_at)
    store = await backend.fresh_store(size)
    await store.open()
    try:
        issued = [
            await issue_key(store, config, customer=CUSTOMER, now=start, name=f"bench-{n}")
            for n in range(KEYS)
        ]
        assert all(k.record.external_subscription_id == SUBSCRIPTION for k in issued)
        key_ids = tuple(k.record.id for k in issued)
        factory = EventFactory(config, SUBSCRIPTION, start, built_at, key_ids, seed=size)
        began = time.perf_counter()
        chunk = CHUNK_BATCHES * CHUNK_BATCH_SIZE
        for first in range(0, size, chunk):
            n = min(chunk, size - first)
            batches = [
                batch
                for offset in range(0, n, CHUNK_BATCH_SIZE)
                for batch in factory.batches(
                    1, min(CHUNK_BATCH_SIZE, n - offset), first=first + offset
                )
            ]
            results = await store.write_batches(batches)
            assert all(r.stored for r in results), "duplicate while building"
        build_seconds = time.perf_counter() - began
    finally:
        await store.close()
    data = DataSet(
        format=FORMAT,
        size=size,
        built_at=built_at,
        build_seconds=build_seconds,
        key_ids=key_ids,
        key_secret=issued[0].secret,
    )
    meta.write_bytes(msgspec.json.encode(data))
    return data


async def load_or_build(size: int, config: Settings, backend: Backend) -> tuple[DataSet, bool]:
    """The cached data set of ``size`` events, built first if missing; (data, was_built)."""
    meta = backend.meta(size)
    if meta.exists() and await backend.exists(size):
        try:
            data = msgspec.json.decode(meta.read_bytes(), type=DataSet)
        except msgspec.DecodeError:
            data = None
        if data is not None and data.format == FORMAT and data.size == size:
            return data, False
    OUT.mkdir(parents=True, exist_ok=True)
    return await build(size, config, backend), True


def _table_counts(db: Path) -> tuple[int, int]:
    """(events, rollup rows) in the file."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        rollups = conn.execute("SELECT count(*) FROM rollups").fetchone()[0]
    return events, rollups


async def measure_service(data: DataSet, calls: int, backend: Backend) -> dict[str, list[float]]:
    """Seconds per ``current_usage`` call: whole subscription, and one key's share."""
    store = backend.store(data.size)
    await store.open()
    service = MeteringService(store)
    timings: dict[str, list[float]] = {"subscription": [], "one key": []}
    try:
        usage = await service.current_usage(SUBSCRIPTION, now=data.built_at)
        counted = sum(c.events_count for c in usage.charges_usage)
        assert counted == data.size, f"usage counts {counted} events, expected {data.size}"
        only = ("key_id", data.key_ids[0])
        for label, restrict in (("subscription", None), ("one key", only)):
            for _ in range(10):  # warm-up: page cache, caches
                await service.current_usage(SUBSCRIPTION, now=data.built_at, only=restrict)
            for _ in range(calls):
                began = time.perf_counter()
                await service.current_usage(SUBSCRIPTION, now=data.built_at, only=restrict)
                timings[label].append(time.perf_counter() - began)
    finally:
        await store.close()
    return timings


def measure_http(data: DataSet, config: Settings, calls: int, backend: Backend) -> list[float]:
    """Seconds per ``GET /v1/usage`` through a gateway on loopback serving the data set."""
    served = msgspec.structs.replace(
        config, store=msgspec.structs.replace(config.store, url=backend.url(data.size))
    )
    app = create_app(served, clock=lambda: data.built_at)
    timings: list[float] = []
    headers = {"authorization": f"Bearer {data.key_secret}"}
    server = BackgroundServer(app, lifespan="on", name="bench-gateway").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(10 + calls):
                began = time.perf_counter()
                response = client.get("/v1/usage", headers=headers)
                elapsed = time.perf_counter() - began
                response.raise_for_status()
                if n >= 10:
                    timings.append(elapsed)
            body = response.json()
    finally:
        server.stop()
    assert body["customer_usage"]["charges_usage"], "empty usage over HTTP"
    return timings


def _ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"


def main() -> None:
    """Build or load each size, measure, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per measurement")
    parser.add_argument("--no-http", action="store_true", help="skip GET /v1/usage")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_URL, help="server for --store postgres")
    args = parser.parse_args()
    backend = Backend(args.store, args.pg_url)
    print(" ".join(f"{k}={v}" for k, v in machine_info().items()))
    config = settings()
    p50s: dict[int, float] = {}
    for size in args.sizes:
        data, built = asyncio.run(load_or_build(size, config, backend))
        events, rollups = asyncio.run(backend.counts(size))
        how = f"built in {data.build_seconds:.1f} s" if built else "cached"
        rate = f" ({size / data.build_seconds:,.0f} events/s)" if built else ""
        print(
            f"\n{backend.kind}: {size:>9,} events ({how}{rate}; {events:,} events, "
            f"{rollups:,} rollup rows; "
            f"now = {data.built_at.isoformat()})"
        )
        timings = asyncio.run(measure_service(data, args.calls, backend))
        for label, values in timings.items():
            print(f"  current_usage {label:13} {_ms(values)}")
        p50s[size] = percentile(timings["subscription"], 0.5)
        if not args.no_http:
            http = measure_http(data, config, args.calls, backend)
            print(f"  GET /v1/usage (2 calls)    {_ms(http)}")
    smallest, largest = min(p50s), max(p50s)
    if smallest != largest:
        growth = p50s[largest] / p50s[smallest]
        print(f"\ncurrent_usage p50 from {smallest:,} to {largest:,} events: x{growth:.2f}")


if __name__ == "__main__":
    main()
