"""SQLite-only behaviour: persistence, schema versioning, rollups, unavailability."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from metering.errors import Conflict, StoreBroken, StoreUnavailable
from metering.ports import AggregateQuery, BatchResult, DuplicatePolicy, EventBatch
from metering.store.rollups import DAY_US, HOUR_US, MONTH
from metering.store.sqlite import SQLiteStore
from metering.store.sqlite_schema import SCHEMA_VERSION
from tests.metering.store.builders import CODE, SUB, at, customer, event, metric, plan


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to inspect or tamper with the file (autocommit)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def opened(path: Path, **options: object) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path, **options)  # type: ignore[arg-type]
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def query(group_keys: tuple[str, ...] = (), **bounds: object) -> AggregateQuery:
    return AggregateQuery(
        external_subscription_id=SUB,
        code=CODE,
        from_ts=bounds.get("from_ts", at()),  # type: ignore[arg-type]
        to_ts=bounds.get("to_ts", at(days=1)),  # type: ignore[arg-type]
        field_name="tokens",
        group_keys=group_keys,
    )


def rollup_rows(
    path: Path, code: str = CODE, grain: int = HOUR_US
) -> list[tuple[str, int, int, int | str]]:
    """(dims, events, numeric events, total) of a code's rollup rows of one grain."""
    with raw(path) as conn:
        rows = conn.execute(
            "SELECT dims, events, numeric_events, total FROM rollups "
            "WHERE code = ? AND grain = ? ORDER BY bucket, dims",
            (code, grain),
        ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def delete_raw_events(path: Path) -> None:
    """Drop the raw events while keeping rollups: what is still counted came from rollups."""
    with raw(path) as conn:
        conn.execute("DELETE FROM events")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tallygate.db"


async def test_data_survives_close_and_reopen(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        await store.put_plan(plan())
        await store.put_customer(customer())
        await store.write_batches([EventBatch(events=(event("t1", ts=at(hours=1)),))])
    async with opened(db) as store:  # a second open() on a migrated file
        assert (await store.get_metric(code=CODE)).field_name == "tokens"
        assert (await store.get_plan(code="pro")).charges
        assert (await store.get_customer(external_id="cus_1")).name == "Ada"
        assert (await store.get_event(transaction_id="t1")).timestamp == at(hours=1)
        again = await store.write_batches([EventBatch(events=(event("t1"),))])
        assert again == [BatchResult(stored=False, inserted=0, duplicates=(0,))]
        assert (await store.aggregate(query()))[0].total == Decimal(10)


async def test_schema_version_wal_and_pragmas(db: Path) -> None:
    async with opened(db):
        with raw(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"events", "rollups", "rollup_specs", "metrics", "api_keys"} <= tables


async def test_refuses_a_newer_schema(db: Path) -> None:
    async with opened(db):
        pass
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SQLiteStore(db)
    with pytest.raises(StoreBroken, match="newer"):
        await store.open()
    assert not await store.ping()


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreBroken, match="does not exist"):
        await SQLiteStore(tmp_path / "nope" / "x.db").open()
    with pytest.raises(ValueError, match="file path"):
        await SQLiteStore(":memory:").open()


async def test_closed_store_is_unavailable(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    await store.close()  # idempotent
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_metric(code=CODE)
    with pytest.raises(StoreUnavailable):
        await store.write_batches([])


def events_in_main_file(path: Path) -> int:
    """Events in the database file itself: ``immutable=1`` makes SQLite ignore the WAL."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchall():
            return 0  # not even the schema has been copied from the WAL yet
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    finally:
        conn.close()
    return int(count)


async def test_background_checkpoints_copy_commits_into_the_database_file(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        for n in range(40):
            batch = tuple(event(f"t{n}-{i}", ts=at(minutes=n)) for i in range(25))
            await store.write_batches([EventBatch(events=batch)])
        # Committed means durable in the WAL; the checkpoint task copies it into the file soon
        # after, without any commit doing that work (wal_autocheckpoint is off on the writer).
        for _ in range(100):
            if events_in_main_file(db) == 1000:
                break
            await asyncio.sleep(0.05)
        assert events_in_main_file(db) == 1000
        assert (await store.aggregate(query()))[0].events == 1000
    # Closing checkpoints what is left: the file alone holds everything.
    assert events_in_main_file(db) == 1000


def tail_events(path: Path) -> int:
    """Events stored after what the rollups hold (rollup_state.folded_seq)."""
    with raw(path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM events WHERE seq > (SELECT folded_seq FROM rollup_state)"
        ).fetchone()
    return int(count)


async def test_small_writes_count_at_once_and_reach_the_rollups_with_the_fold(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        # One event per kind of range: partial edge hours, whole hours and a whole day.
        for n, (ts, tokens) in enumerate(
            [(at(minutes=10), 1), (at(hours=5), 10), (at(days=1, hours=3), 100), (at(days=2), 1000)]
        ):
            batch = EventBatch(events=(event(f"t{n}", ts=ts, properties={"tokens": tokens}),))
            await store.write_batches([batch])
        bounds = {"from_ts": at(minutes=5), "to_ts": at(days=2, minutes=30)}
        assert tail_events(db) == 4
        assert rollup_rows(db) == []  # nothing folded yet, and yet:
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(1111)
        await store.fold()
        assert tail_events(db) == 0
        assert sum(int(total) for *_, total in rollup_rows(db)) == 1111
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(1111)
        delete_raw_events(db)
        # Whole hours and the whole day now come from rollups; the edges are gone with the rows.
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(110)


async def test_the_background_task_folds_the_tail_soon_after_small_writes(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        await store.write_batches([EventBatch(events=(event("t1", ts=at(hours=1)),))])
        for _ in range(100):
            if tail_events(db) == 0:
                break
            await asyncio.sleep(0.02)
        assert tail_events(db) == 0
        assert [events for _, events, _, _ in rollup_rows(db)] == [1]


async def test_a_large_write_folds_the_tail_with_its_own_events(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        await store.write_batches([EventBatch(events=(event("small", ts=at(hours=1)),))])
        large = tuple(event(f"t{n}", ts=at(hours=1, seconds=n)) for n in range(200))
        await store.write_batches([EventBatch(events=large)])
        assert tail_events(db) == 0  # folded in the large write's transaction
        assert [events for _, events, _, _ in rollup_rows(db)] == [201]


async def test_open_folds_a_tail_left_by_a_killed_process(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        await store.write_batches([EventBatch(events=(event("t1", ts=at(hours=1)),))])
    with raw(db) as conn:  # what a process killed before its fold leaves behind
        conn.execute("DELETE FROM rollups")
        conn.execute("UPDATE rollup_state SET folded_seq = 0")
    assert tail_events(db) == 1
    async with opened(db) as store:
        assert tail_events(db) == 0  # folded while opening, before any write
        assert [events for _, events, _, _ in rollup_rows(db)] == [1]
        assert (await store.aggregate(query()))[0].events == 1


async def test_another_process_small_writes_are_counted_and_folded(db: Path) -> None:
    async with opened(db) as first, opened(db) as second:
        await first.put_metric(metric())
        await second.write_batches([EventBatch(events=(event("t1", ts=at(hours=1)),))])
        # The tail is read from the file, so the first store counts the second's events...
        assert (await first.aggregate(query()))[0].total == Decimal(10)
        # ...and folds them, whoever wrote them.
        await first.fold()
        assert tail_events(db) == 0
        assert (await second.aggregate(query()))[0].total == Decimal(10)
        assert [events for _, events, _, _ in rollup_rows(db)] == [1]


async def test_locked_database_raises_store_unavailable(db: Path) -> None:
    async with opened(db, busy_timeout=0.05) as store:
        with raw(db) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.write_batches([EventBatch(events=(event("t1"),))])
            other.execute("ROLLBACK")
        # It recovers once the lock is gone; the failed transaction left nothing behind.
        result = await store.write_batches([EventBatch(events=(event("t1"),))])
        assert result == [BatchResult(stored=True, inserted=1)]


async def test_whole_buckets_come_from_rollups_edges_from_events(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        tokens = {
            "edge-left": (at(minutes=59), 1),
            "hour-left": (at(hours=23), 10),
            "day-1": (at(days=1), 100),
            "day-2": (at(days=2, hours=23, minutes=59), 1000),
            "hour-right": (at(days=3, hours=1), 10000),
            "edge-right": (at(days=3, hours=2, minutes=1), 100000),
        }
        events = tuple(
            event(txn, ts=ts, properties={"tokens": n}) for txn, (ts, n) in tokens.items()
        )
        await store.write_batches([EventBatch(events=events)])
        bounds = {"from_ts": at(minutes=30), "to_ts": at(days=3, hours=2, minutes=30)}
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(111111)
        await store.fold()  # a small write: its rollups come with the fold
        delete_raw_events(db)
        # Whole hours and days still count: they were read from rollups, not from events.
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(11110)
        # A range without a whole hour reads only raw events.
        narrow = {"from_ts": at(hours=1, minutes=1), "to_ts": at(hours=1, minutes=59)}
        assert await store.aggregate(query(**narrow)) == []


async def test_whole_months_come_from_month_rollups(db: Path) -> None:
    # T0 is 2025-06-01: June is whole, May 31st a whole day, July 1st 00:00-01:00 a whole hour.
    async with opened(db) as store:
        await store.put_metric(metric())
        tokens = {
            "may-31": (at(days=-1), 1),
            "june-1": (at(), 10),
            "june-30": (at(days=29, hours=23, minutes=59), 100),
            "july-1-hour": (at(days=30, minutes=5), 1000),
            "july-1-edge": (at(days=30, hours=1, minutes=5), 10000),
        }
        events = tuple(
            event(txn, ts=ts, properties={"tokens": n}) for txn, (ts, n) in tokens.items()
        )
        await store.write_batches([EventBatch(events=events)])
        bounds = {"from_ts": at(days=-1), "to_ts": at(days=30, hours=1, minutes=30)}
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(11111)
        await store.fold()  # a small write: its rollups come with the fold
        delete_raw_events(db)
        # Everything but the partial last hour was read from month, day and hour rollups.
        assert (await store.aggregate(query(**bounds)))[0].total == Decimal(1111)
    assert [(events, total) for _, events, _, total in rollup_rows(db, grain=MONTH)] == [
        (1, 1),
        (2, 110),
        (2, 11000),
    ]


async def test_sums_past_int64_stay_exact(db: Path) -> None:
    # Each day row holds one INTEGER just below 2**62; SQLite's SUM over the days overflows
    # int64, so the read falls back to folding rows in Python; decimals mix in as TEXT.
    big = 2**62 - 1
    async with opened(db) as store:
        await store.put_metric(metric())
        values: list[int | Decimal] = [big, big, big, Decimal("0.25"), Decimal("7")]
        events = tuple(
            event(f"t{n}", ts=at(days=n + 1, hours=3), properties={"tokens": value})
            for n, value in enumerate(values)
        )
        await store.write_batches([EventBatch(events=events)])
        bounds = {"from_ts": at(days=1), "to_ts": at(days=6, microseconds=-1)}
        await store.fold()  # a small write: its rollups come with the fold
        delete_raw_events(db)  # what is counted comes from rollups
        (result,) = await store.aggregate(query(**bounds))
    assert result.total == 3 * big + Decimal("7.25")
    assert result.maximum == big
    assert result.numeric_events == 5


async def test_upgrade_from_schema_1_rebuilds_rollups_with_months(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        events = tuple(
            event(f"t{n}", ts=at(days=n), properties={"tokens": n}) for n in range(0, 40, 3)
        )
        await store.write_batches([EventBatch(events=events)])
    with raw(db) as conn:  # what a file written before month rollups looks like
        conn.execute("DELETE FROM rollups WHERE grain = ?", (MONTH,))
        conn.execute("PRAGMA user_version = 1")
    async with opened(db) as store:
        totals = [total for _, _, _, total in rollup_rows(db, grain=MONTH)]
        assert totals == [sum(range(0, 30, 3)), sum(range(30, 40, 3))]
        whole_june = {"from_ts": at(), "to_ts": at(days=30, microseconds=-1)}
        delete_raw_events(db)
        assert (await store.aggregate(query(**whole_june)))[0].total == sum(range(0, 30, 3))
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_rollups_only_count_inserted_rows(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())
        first = EventBatch(events=(event("a", properties={"type": "input", "tokens": 1}),))
        await store.write_batches([first])
        skip = EventBatch(
            events=(
                event("a", properties={"type": "input", "tokens": 100}),
                event("b", properties={"type": "input", "tokens": 2}),
                event("b", properties={"type": "input", "tokens": 100}),
            ),
            policy=DuplicatePolicy.SKIP,
        )
        reject = EventBatch(events=(event("c", properties={"tokens": 100}), event("a")))
        await store.write_batches([skip, reject])
    assert [(events, total) for _, events, _, total in rollup_rows(db)] == [(2, 3)]
    assert [(events, total) for _, events, _, total in rollup_rows(db, grain=DAY_US)] == [(2, 3)]


async def test_rollups_rebuilt_when_filter_keys_change(db: Path) -> None:
    async with opened(db) as store:
        # Events before any metric: stored raw, no rollups.
        events = tuple(
            event(f"t{n}", ts=at(hours=n), properties={"model": "m", "type": t, "tokens": n})
            for n, t in enumerate(["input", "output", "input", "output"], start=1)
        )
        await store.write_batches([EventBatch(events=events)])
        assert rollup_rows(db) == []
        await store.put_metric(metric(filters={"model": ["m"]}))
        assert [dims for dims, *_ in rollup_rows(db)] == ['["m"]'] * 4
        await store.put_metric(metric(filters={"model": ["m"], "type": ["input", "output"]}))
        assert [dims for dims, *_ in rollup_rows(db)] == [
            '["m","input"]',
            '["m","output"]',
            '["m","input"]',
            '["m","output"]',
        ]
        # A new name alone does not rebuild; a new field does.
        await store.put_metric(metric(filters={"model": ["m"], "type": ["x"]}, name="renamed"))
        await store.put_metric(metric(field_name="other", filters={"type": ["x"]}))
        assert [(d, n) for d, _, n, _ in rollup_rows(db)] == [
            ('["input"]', 0),
            ('["output"]', 0),
        ] * 2
        await store.put_metric(metric(filters={"type": ["x"]}))
        delete_raw_events(db)
        got = await store.aggregate(query(("type",), from_ts=at(), to_ts=at(days=1)))
        assert [(g.values, g.total) for g in got] == [(("input",), 4), (("output",), 6)]


async def test_rollups_follow_extra_keys_and_metric_code_changes(db: Path) -> None:
    props = {"model": "m", "type": "input", "tokens": 3, "key_id": "k1"}
    async with opened(db) as store:
        await store.put_metric(metric(filters={"model": ["m"]}))
        await store.write_batches([EventBatch(events=(event("t1", properties=props),))])
        await store.fold()  # a small write: its rollups come with the fold
        assert [dims for dims, *_ in rollup_rows(db)] == ['["m"]']
    async with opened(db, rollup_extra_keys=("key_id",)) as store:
        # Reopened with another extra key: rebuilt at open.
        assert [dims for dims, *_ in rollup_rows(db)] == ['["k1","m"]']
        await store.put_metric(metric("renamed", id="bm-llm_tokens"))
        assert rollup_rows(db) == []
        assert rollup_rows(db, "renamed") == []  # no events under the new code
        await store.put_metric(metric(id="bm-2"))
        assert len(rollup_rows(db)) == 1
        await store.delete_metric("bm-2")
        assert rollup_rows(db) == []
        with raw(db) as conn:
            specs = conn.execute("SELECT code, keys FROM rollup_specs").fetchall()
        assert [(c, msgspec.json.decode(k)) for c, k in specs] == [
            ("renamed", ["key_id", "model", "type"])
        ]
        # The events stay and still aggregate (raw scan, no metric).
        assert (await store.aggregate(query()))[0].total == Decimal(3)


async def test_metric_conflict_rolls_back_rollup_changes(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric("other", id="bm-other"))
        await store.put_metric(metric(filters={"model": ["m"]}))
        await store.write_batches([EventBatch(events=(event("t1"),))])
        before = rollup_rows(db)
        with pytest.raises(Conflict):
            await store.put_metric(metric("other", id="bm-llm_tokens", filters={"type": ["x"]}))
        assert rollup_rows(db) == before
        assert (await store.aggregate(query(("model",))))[0].values == ("gpt-4o",)


async def test_reads_and_writes_interleave(db: Path) -> None:
    async with opened(db) as store:
        await store.put_metric(metric())

        async def write(n: int) -> None:
            batch = EventBatch(
                events=(event(f"t{n}", ts=at(hours=n % 5), properties={"tokens": 1}),)
            )
            await store.write_batches([batch])

        async def read() -> int:
            got = await store.aggregate(query())
            return got[0].events if got else 0

        outcomes = await asyncio.gather(*(op for n in range(30) for op in (write(n), read())))
        seen = [count for count in outcomes if count is not None]
        assert all(0 <= count <= 30 for count in seen)
        assert await read() == 30
