"""Contract: values outside the numeric domain, stored by an older version (ingestion refuses
them now), never make a write, a fold or a read fail, and never change the other events' sums.

Such a value is skipped like a non-numeric one: its event counts as an event, not as a number.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from metering.ports import AggregateQuery, EventBatch, Store, Window
from metering.store.codec import to_micros
from metering.store.postgres import PostgresStore
from metering.store.rollups import DAY_US, HOUR_US, MONTH
from metering.store.sqlite import SQLiteStore
from tests.metering.store.builders import CODE, SUB, at, event, metric
from tests.support.postgres import fresh_schema

#: What older versions accepted: every one of these is outside the domain (or not a number).
ODD_TOKENS: list[Any] = [
    Decimal("1E+1000000"),
    Decimal("1E+309"),
    Decimal("-1E+400"),
    Decimal("1E-400"),
    10**4000,
    Decimal(10**20),
    Decimal("0.000000000000000000001"),
    "1" * 5000,
    "NaN",
    "Infinity",
]
#: The good events: 3 x 1,280 tokens, at a raw edge, inside a whole hour and on the next day.
GOOD = [(at(minutes=10), 1280), (at(hours=5, minutes=30), 1280), (at(days=1, hours=2), 1280)]


def tokens_query(group_keys: tuple[str, ...] = ()) -> AggregateQuery:
    return AggregateQuery(
        external_subscription_id=SUB,
        code=CODE,
        from_ts=at(minutes=5),  # a partial first hour: raw edges and rollups both read
        to_ts=at(days=2, minutes=50),
        field_name="tokens",
        group_keys=group_keys,
    )


def odd_events() -> list[Any]:
    events = [
        event(
            f"odd-{n}", ts=at(hours=n % 30, minutes=20), properties={"type": "input", "tokens": v}
        )
        for n, v in enumerate(ODD_TOKENS)
    ]
    # A nested value in a filter property (its text is a rollup dims value) and a huge one.
    events.append(event("nested", ts=at(hours=3), properties={"type": [Decimal("1.5")]}))
    events.append(event("huge-type", ts=at(hours=4), properties={"type": Decimal("1E+999999")}))
    return events


async def store_good_and_odd(store: Store) -> None:
    await store.put_metric(metric(filters={"type": ["input", "output"]}))
    good = [
        event(f"good-{n}", ts=ts, properties={"type": "input", "tokens": tokens})
        for n, (ts, tokens) in enumerate(GOOD)
    ]
    # One event per batch, as requests write them (the SQLite adapter folds them later).
    for item in [*good[:2], *odd_events(), good[2]]:
        await store.write_batches([EventBatch(events=(item,))])
    fold = getattr(store, "fold", None)  # the SQLite adapter's rollup tail
    if fold is not None:
        await fold()


async def test_odd_values_are_skipped_and_the_good_sums_stay_exact(store: Store) -> None:
    await store_good_and_odd(store)
    (total,) = await store.aggregate(tokens_query())
    assert total.total == Decimal(3840)
    assert total.numeric_events == 3
    assert total.maximum == Decimal(1280)
    assert total.events == 3 + len(odd_events())
    by_type = {g.values: g for g in await store.aggregate(tokens_query(("type",)))}
    assert by_type[("input",)].total == Decimal(3840)
    assert by_type[("[1.5]",)].events == 1
    assert by_type[("1E+999999",)].events == 1


async def test_odd_values_never_break_a_series(store: Store) -> None:
    await store_good_and_odd(store)
    for window in (Window.HOUR, Window.DAY):
        series = await store.aggregate_series(tokens_query(), window)
        totals = [group.total for point in series for group in point.groups]
        assert sum(totals) == Decimal(3840)


async def test_a_metric_defined_after_odd_values_rebuilds_exactly(store: Store) -> None:
    await store_good_and_odd(store)
    # A new filter key makes the SQL stores rebuild every rollup row from the raw events.
    await store.put_metric(metric(filters={"type": ["input"], "model": ["gpt-4o"]}))
    (total,) = await store.aggregate(tokens_query())
    assert (total.total, total.numeric_events) == (Decimal(3840), 3)


# -- rows put straight into a real file or schema (an older version, or another writer) -------

_EVENT_COLUMNS = (
    "transaction_id, external_subscription_id, code, ts, created_us, id, properties, "
    "precise_total_amount_cents"
)
#: Stored properties texts that no current ingestion lets through; the last two are not JSON
#: msgspec reads (NaN, a 5,000-digit integer), and one is not JSON at all.
ODD_PROPERTIES = [
    '{"type": "input", "tokens": 1e1000000}',
    '{"type": "input", "tokens": -1e400}',
    '{"type": "input", "tokens": 1e-400}',
    '{"type": "input", "tokens": "NaN"}',
    '{"type": "input", "tokens": NaN}',
    '{"type": "input", "tokens": Infinity}',
    '{"type": "input", "tokens": ' + "1" * 5000 + "}",
    "not json at all",
]


def odd_rows(first_ts: int) -> list[tuple[object, ...]]:
    return [
        (f"old-{n}", SUB, CODE, first_ts + n * 60_000_000, first_ts, f"ev-old-{n}", text, None)
        for n, text in enumerate(ODD_PROPERTIES)
    ]


@contextlib.asynccontextmanager
async def tampered(path: Path) -> AsyncIterator[sqlite3.Connection]:
    """A file holding the good events, folded, then a plain connection to tamper with it."""
    async with opened_sqlite(path) as store:
        await store_good(store)
        await store.fold()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


async def store_good(store: Store) -> None:
    await store.put_metric(metric(filters={"type": ["input", "output"]}))
    good = [
        event(f"good-{n}", ts=ts, properties={"type": "input", "tokens": tokens})
        for n, (ts, tokens) in enumerate(GOOD)
    ]
    await store.write_batches([EventBatch(events=(item,)) for item in good])


@contextlib.asynccontextmanager
async def opened_sqlite(path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, rollup_extra_keys=("key_id",))
    await store.open()  # a start: it folds what it finds in the tail
    try:
        yield store
    finally:
        await store.close()


async def assert_exact(store: Store) -> None:
    (total,) = await store.aggregate(tokens_query())
    assert (total.total, total.numeric_events, total.maximum) == (Decimal(3840), 3, 1280)
    for window in (Window.HOUR, Window.DAY):
        series = await store.aggregate_series(tokens_query(), window)
        assert sum(g.total for point in series for g in point.groups) == Decimal(3840)


async def test_sqlite_rows_of_an_older_version_never_stop_a_start_or_a_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    async with tampered(path) as conn:
        # Unfolded events (the tail), and rollup numbers no domain sum can be.
        conn.executemany(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            odd_rows(to_micros(at(hours=7))),
        )
        conn.execute("UPDATE rollups SET total = 'NaN' WHERE grain = ?", (DAY_US,))
        conn.execute("UPDATE rollups SET total = '1E+1000000' WHERE grain = ?", (MONTH,))
        conn.execute("UPDATE rollups SET maximum = 1e309 WHERE grain = ?", (HOUR_US,))
    for start in range(2):  # the start folds the tail; a second start finds the file fine
        async with opened_sqlite(path) as store:
            await assert_exact(store)
            await store_good_again(store, start)
            await store.fold()


async def store_good_again(store: Store, number: int = 0) -> None:
    """A write into the rollup rows that hold odd numbers (no tokens): it commits."""
    item = event(f"again-{number}", ts=at(hours=5, minutes=40), properties={"type": "input"})
    (result,) = await store.write_batches([EventBatch(events=(item,))])
    assert result.stored


async def test_an_older_versions_rollups_are_rebuilt_on_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    async with tampered(path) as conn:
        # What version 3 stored for an event of 10**25 tokens: in the rollups, a sum that
        # looks plausible. Such a value no longer counts, so the rollups must be rebuilt.
        conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",  # noqa: S608
            (
                "old-big",
                SUB,
                CODE,
                to_micros(at(hours=6)),
                0,
                "ev-big",
                '{"type": "input", "tokens": 10000000000000000000000000}',
                None,
            ),
        )
        conn.execute("UPDATE rollups SET total = total + 10000000000000000000000000")
        conn.execute("PRAGMA user_version = 3")
    async with opened_sqlite(path) as store:
        await assert_exact(store)


async def test_postgres_rows_outside_the_domain_never_break_a_read_or_a_write() -> None:
    async with fresh_schema() as url:
        store = PostgresStore(url, rollup_extra_keys=("key_id",), max_connections=2)
        await store.open()
        try:
            await store_good(store)
            conn = await asyncpg.connect(url)
            try:
                values = ", ".join(f"${n}" for n in range(1, 9))
                await conn.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({values})",  # noqa: S608
                    odd_rows(to_micros(at(hours=7))),
                )
                # NUMERIC holds what no domain sum reaches: NaN, infinity, 131,072 digits
                # (two of which overflow NUMERIC when the read sums them).
                await conn.execute("UPDATE rollups SET total = 9e131071")
                await conn.execute("UPDATE rollups SET maximum = 'NaN' WHERE grain = $1", HOUR_US)
                await conn.execute(
                    "UPDATE rollups SET maximum = 'Infinity' WHERE grain = $1", MONTH
                )
            finally:
                await conn.close()
            await assert_exact(store)
            await store_good_again(store)
            await assert_exact(store)
        finally:
            await store.close()
        restarted = PostgresStore(url, rollup_extra_keys=("key_id",), max_connections=2)
        await restarted.open()
        try:
            await assert_exact(restarted)
        finally:
            await restarted.close()
