"""Property: the SQL stores' rollup-backed aggregate (and series) equal a raw scan here, and
the fake.

Random events (timestamps over three days, hour and day edges favoured, plus the edges of the
months around them, so whole months come from month rollups; property values including
non-numeric and absent ones; random decimals; repeated transaction ids written with SKIP),
the metric stored before, between or after the batches (rollups built live or rebuilt), and
random query ranges, aligned or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.models import Event
from metering.ports import (
    AggregateQuery,
    DuplicatePolicy,
    EventBatch,
    GroupAggregate,
    Store,
    Window,
    WindowAggregate,
)
from metering.store.memory import MemoryStore
from metering.store.postgres import PostgresStore
from metering.store.sqlite import SQLiteStore
from metering.values import numeric_value, property_text
from tests.metering.store.builders import CODE, SUB, T0, event, metric
from tests.support.postgres import create_schema, drop_schema, schema_url

HOUR = 3_600_000_000
DAY = 24 * HOUR
SPAN = 3 * DAY
MISSING = object()

offsets = st.one_of(
    st.integers(-HOUR, SPAN + HOUR),
    st.tuples(st.integers(-1, 4), st.sampled_from([-1, 0, 1])).map(lambda p: p[0] * DAY + p[1]),
    st.integers(0, 72).map(lambda h: h * HOUR),
    st.integers(0, 72).map(lambda h: h * HOUR - 1),
    st.integers(0, 72).map(lambda h: h * HOUR + 1),
    # T0 is 2025-06-01: the starts of May, June, July and August, and just around them.
    st.tuples(
        st.sampled_from([-31 * DAY, 0, 30 * DAY, 61 * DAY]),
        st.sampled_from([-DAY, -HOUR, -1, 0, 1, HOUR, DAY, 5 * DAY + 7 * HOUR + 3]),
    ).map(sum),
)
decimals = st.decimals(
    min_value=-1_000_000, max_value=1_000_000_000, places=6, allow_nan=False, allow_infinity=False
)
token_values = st.one_of(
    st.integers(-1000, 10**9),
    decimals,
    decimals.map(lambda d: format(d, "f")),
    st.sampled_from(["foo", "1e3", ".5", "+5", "", "-0", "7.", None, True, MISSING]),
)
properties = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["a", "b", 7, None, MISSING]),
        "type": st.sampled_from(["input", "output", MISSING]),
        "key_id": st.sampled_from(["k1", "k2", MISSING]),
        "tokens": token_values,
    }
).map(lambda p: {k: v for k, v in p.items() if v is not MISSING})
events = st.lists(st.tuples(st.integers(0, 150), offsets, properties), max_size=150)
group_keys = st.lists(
    st.sampled_from(["model", "type", "key_id", "region"]), unique=True, max_size=3
).map(tuple)
queries = st.lists(
    st.tuples(st.none() | offsets, offsets, group_keys, st.sampled_from(["tokens", None, "x"])),
    min_size=1,
    max_size=5,
)


def to_query(raw: tuple[int | None, int, tuple[str, ...], str | None]) -> AggregateQuery:
    low, high, keys, field = raw
    return AggregateQuery(
        external_subscription_id=SUB,
        code=CODE,
        from_ts=None if low is None else T0 + timedelta(microseconds=low),
        to_ts=T0 + timedelta(microseconds=high),
        field_name=field,
        group_keys=keys,
    )


def scan(stored: Sequence[Event], query: AggregateQuery) -> list[GroupAggregate]:
    """The answer by definition, written independently of the adapters' folding code."""
    groups: dict[tuple[str | None, ...], list[Any]] = {}
    for e in stored:
        if (query.from_ts is not None and e.timestamp < query.from_ts) or e.timestamp > query.to_ts:
            continue
        key = tuple(property_text(e.properties.get(k)) for k in query.group_keys)
        g = groups.setdefault(key, [0, 0, Decimal(0), None])
        g[0] += 1
        value = (
            None if query.field_name is None else numeric_value(e.properties.get(query.field_name))
        )
        if value is not None:
            g[1] += 1
            g[2] += value
            g[3] = value if g[3] is None else max(g[3], value)
    return [
        GroupAggregate(values=k, events=g[0], numeric_events=g[1], total=g[2], maximum=g[3])
        for k, g in groups.items()
    ]


def window_start(moment: datetime, window: Window) -> datetime:
    """The UTC hour or day holding ``moment``, by calendar arithmetic (not the adapters')."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if window is Window.HOUR else hour.replace(hour=0)


def scan_series(
    stored: Sequence[Event], query: AggregateQuery, window: Window
) -> list[tuple[datetime, list[tuple[Any, ...]]]]:
    """The series by definition: the raw scan of each window's events."""
    per_window: dict[datetime, list[Event]] = {}
    for e in stored:
        per_window.setdefault(window_start(e.timestamp, window), []).append(e)
    answer = [(start, canonical(scan(events, query))) for start, events in per_window.items()]
    return sorted((start, groups) for start, groups in answer if groups)


def canonical_series(
    results: list[WindowAggregate],
) -> list[tuple[datetime, list[tuple[Any, ...]]]]:
    return [(w.start, canonical(list(w.groups))) for w in results]


def canonical(results: list[GroupAggregate]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            (tuple((v is not None, v or "") for v in r.values)),
            r.events,
            r.numeric_events,
            r.total,
            r.maximum,
        )
        for r in results
    )


SqlStore = Callable[[], contextlib.AbstractAsyncContextManager[Store]]


@contextlib.asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    with tempfile.TemporaryDirectory() as tmp:
        yield SQLiteStore(Path(tmp) / "p.db", rollup_extra_keys=("key_id",))


def postgres_store(url: str) -> SqlStore:
    """A store on ``url``'s schema, emptied first (a schema per example would cost ~0.3 s)."""

    @contextlib.asynccontextmanager
    async def emptied() -> AsyncIterator[Store]:
        store = PostgresStore(url, rollup_extra_keys=("key_id",), max_connections=2)
        conn = await asyncpg.connect(url)
        try:
            if await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
                await conn.execute("TRUNCATE events, rollups, rollup_specs, metrics")
        finally:
            await conn.close()
        yield store

    return emptied


async def check(
    drawn: list[tuple[int, int, dict[str, Any]]],
    cuts: list[int],
    metric_after: int,
    raw_queries: list[tuple[int | None, int, tuple[str, ...], str | None]],
    sql_store: SqlStore,
) -> None:
    written = [
        event(f"t{txn}", ts=T0 + timedelta(microseconds=offset), properties=props)
        for txn, offset, props in drawn
    ]
    first: dict[str, Event] = {}
    for e in written:
        first.setdefault(e.transaction_id, e)  # SKIP keeps the first copy
    edges = sorted({0, len(written), *(c % (len(written) + 1) for c in cuts)})
    batches = [
        EventBatch(events=tuple(written[a:b]), policy=DuplicatePolicy.SKIP)
        for a, b in itertools.pairwise(edges)
    ]
    async with sql_store() as sql:
        memory = MemoryStore()
        for store in (sql, memory):
            await store.open()
        try:
            for n in range(len(batches) + 1):
                if n == min(metric_after, len(batches)):
                    for store in (sql, memory):
                        await store.put_metric(metric())
                if n < len(batches):
                    for store in (sql, memory):
                        await store.write_batches(batches[n : n + 1])
            # SQLite: first with the small writes' events still in the rollup tail, then
            # with everything folded into the rollups.
            for folded in (False, True):
                if folded and isinstance(sql, SQLiteStore):
                    await sql.fold()
                for raw in raw_queries:
                    q = to_query(raw)
                    expected = canonical(scan(list(first.values()), q))
                    assert canonical(await sql.aggregate(q)) == expected, (q, folded)
                    assert canonical(await memory.aggregate(q)) == expected, q
                    for window in Window:
                        series = scan_series(list(first.values()), q, window)
                        got = await sql.aggregate_series(q, window)
                        assert canonical_series(got) == series, (q, window, folded)
                        assert canonical_series(await memory.aggregate_series(q, window)) == series
        finally:
            for store in (sql, memory):
                await store.close()


PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # The only fixture is a schema URL, emptied by each example itself.
        HealthCheck.function_scoped_fixture,
    ],
)
ARGUMENTS = given(
    drawn=events,
    cuts=st.lists(st.integers(0, 200), max_size=4),
    metric_after=st.integers(0, 5),
    raw_queries=queries,
)


@PROPERTY_SETTINGS
@ARGUMENTS
def test_aggregate_matches_raw_scan(
    drawn: list[tuple[int, int, dict[str, Any]]],
    cuts: list[int],
    metric_after: int,
    raw_queries: list[tuple[int | None, int, tuple[str, ...], str | None]],
) -> None:
    asyncio.run(check(drawn, cuts, metric_after, raw_queries, sqlite_store))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A schema of its own for the module's run (skips, or fails with CI set, without server)."""
    schema = asyncio.run(create_schema("tg_prop"))
    try:
        yield schema_url(schema)
    finally:
        asyncio.run(drop_schema(schema))


@PROPERTY_SETTINGS
@ARGUMENTS
def test_postgres_aggregate_matches_raw_scan(
    postgres_url: str,
    drawn: list[tuple[int, int, dict[str, Any]]],
    cuts: list[int],
    metric_after: int,
    raw_queries: list[tuple[int | None, int, tuple[str, ...], str | None]],
) -> None:
    asyncio.run(check(drawn, cuts, metric_after, raw_queries, postgres_store(postgres_url)))
