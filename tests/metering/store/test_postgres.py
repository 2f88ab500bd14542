"""PostgreSQL-only behaviour: migrations under the advisory lock, several stores on one schema
(replicas) writing the same identities at once, metric changes seen by every replica."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from metering.errors import StoreBroken, StoreUnavailable
from metering.ports import AggregateQuery, BatchResult, DuplicatePolicy, EventBatch
from metering.store.postgres import PostgresStore
from metering.store.postgres_schema import SCHEMA_VERSION
from tests.metering.store.builders import CODE, SUB, at, event, metric
from tests.support.postgres import (
    PG_URL,
    drop_schema,
    fresh_schema,
    require_postgres,
    schema_url,
)

SKIP = DuplicatePolicy.SKIP


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_schema() as schema_url:
        yield schema_url


@contextlib.asynccontextmanager
async def opened(url: str, count: int = 1) -> AsyncIterator[list[PostgresStore]]:
    """``count`` stores on one schema, opened at the same time (replicas starting together)."""
    stores = [PostgresStore(url, rollup_extra_keys=("key_id",), max_connections=3)]
    stores += [PostgresStore(url, rollup_extra_keys=("key_id",)) for _ in range(count - 1)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        yield stores
    finally:
        for store in stores:
            await store.close()


def tokens_query(group_keys: tuple[str, ...] = ()) -> AggregateQuery:
    return AggregateQuery(
        external_subscription_id=SUB,
        code=CODE,
        from_ts=at(),
        to_ts=at(days=3),
        field_name="tokens",
        group_keys=group_keys,
    )


async def test_replicas_starting_together_migrate_once(url: str) -> None:
    async with opened(url, count=4):
        pass
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert [row[0] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


async def test_refuses_a_newer_schema(url: str) -> None:
    async with opened(url):
        pass
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)", SCHEMA_VERSION + 1
        )
    finally:
        await conn.close()
    with pytest.raises(StoreBroken, match="newer than this tallygate"):
        async with opened(url):
            pass


async def test_unreachable_server_is_unavailable() -> None:
    # Port 1 on loopback: nothing listens there.
    store = PostgresStore("postgresql://root@127.0.0.1:1/none", connect_timeout=2)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert not isinstance(caught.value, StoreBroken)  # it may come back by itself
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_metric(code=CODE)


async def test_replicas_writing_the_same_identities_count_each_once(url: str) -> None:
    """Four replicas write overlapping identities in shuffled orders and groups at once.

    Without the key-ordered inserts and upserts this deadlocks within a few rounds; with
    them, every identity is stored once and the rollup totals equal the raw sum exactly.
    """
    async with opened(url, count=4) as stores:
        await stores[0].put_metric(metric())
        events = [
            event(
                f"t{n}",
                ts=at(hours=n % 50, microseconds=n),
                properties={
                    "model": "gpt-4o",
                    "type": ("input", "output")[n % 2],
                    "tokens": Decimal(n) / 100,
                },
            )
            for n in range(400)
        ]
        rng = random.Random(7)

        async def replica(store: PostgresStore) -> int:
            mine = events[:]
            rng.shuffle(mine)
            inserted = 0
            for start in range(0, len(mine), 50):
                group = mine[start : start + 50]
                batches = [
                    EventBatch(events=tuple(group[i : i + 10]), policy=SKIP)
                    for i in range(0, len(group), 10)
                ]
                results = await store.write_batches(batches)
                inserted += sum(result.inserted for result in results)
            return inserted

        inserted = await asyncio.gather(*(replica(store) for store in stores))
        assert sum(inserted) == len(events)
        expected = sum((e.properties["tokens"] for e in events), Decimal(0))
        for store in stores:
            (total,) = await store.aggregate(tokens_query())
            assert (total.events, total.total) == (len(events), expected)
            by_type = await store.aggregate(tokens_query(("type",)))
            assert sum(group.total for group in by_type) == expected


async def test_reject_batch_loses_to_a_later_batch_of_the_same_group(url: str) -> None:
    async with opened(url) as (store,):
        await store.put_metric(metric())
        await store.write_batches([EventBatch(events=(event("old"),))])
        rejected = EventBatch(
            events=(event("new", properties={"tokens": 1}), event("old")),
        )
        kept = EventBatch(events=(event("new", properties={"tokens": 2}),), policy=SKIP)
        results = await store.write_batches([rejected, kept])
        assert results == [
            BatchResult(stored=False, inserted=0, duplicates=(1,)),
            BatchResult(stored=True, inserted=1),
        ]
        stored = await store.get_event(transaction_id="new", external_subscription_id=SUB)
        assert stored.properties == {"tokens": 2}
        (total,) = await store.aggregate(tokens_query())
        assert (total.events, total.total) == (2, Decimal(12))


async def test_metric_changed_through_one_replica_is_followed_by_the_others(url: str) -> None:
    async with opened(url, count=2) as (a, b):
        await a.put_metric(metric(filters={"model": ["gpt-4o"]}))
        await b.write_batches(
            [EventBatch(events=(event("t1", properties={"model": "m", "type": "x", "tokens": 3}),))]
        )
        # Replica A adds a filter key: the rollups are rebuilt with "type" in their dims.
        await a.put_metric(metric(filters={"model": ["gpt-4o"], "type": ["x", "y"]}))
        # Replica B still believes the old spec; its next write follows the stored one.
        await b.write_batches(
            [EventBatch(events=(event("t2", properties={"model": "m", "type": "y", "tokens": 4}),))]
        )
        for store in (a, b):
            groups = await store.aggregate(tokens_query(("type",)))
            assert [(g.values, g.events, g.total) for g in groups] == [
                (("x",), 1, Decimal(3)),
                (("y",), 1, Decimal(4)),
            ]


async def test_a_missing_search_path_schema_is_created() -> None:
    await require_postgres()
    name = f"tg_new_{uuid.uuid4().hex[:12]}"
    try:
        async with opened(schema_url(name)) as (store,):
            await store.put_metric(metric())
            assert (await store.get_metric(code=CODE)).code == CODE
        conn = await asyncpg.connect(PG_URL)
        try:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1", name
            )
        finally:
            await conn.close()
        assert tables > 0
    finally:
        await drop_schema(name)


async def test_a_schema_that_cannot_be_created_is_a_clear_error() -> None:
    await require_postgres()
    # The pg_ prefix is reserved for the system: no role may create such a schema.
    name = f"pg_tallygate_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(schema_url(name))
    with pytest.raises(StoreBroken, match=f"the schema {name} .* cannot be created") as caught:
        await store.open()
    assert "CREATE SCHEMA" in str(caught.value)  # what to do
    assert not await store.ping()


async def test_a_refused_login_is_broken_not_a_crash() -> None:
    await require_postgres()
    parts = urlsplit(PG_URL)
    url = urlunsplit(
        parts._replace(
            netloc=f"tg_no_such_role_{uuid.uuid4().hex[:8]}@{parts.hostname}:{parts.port or 5432}"
        )
    )
    with pytest.raises(StoreBroken, match="postgresql refused"):
        await PostgresStore(url, connect_timeout=5).open()
