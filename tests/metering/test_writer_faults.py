"""EventWriter under faults, over real stores: a batch the store refuses fails alone, and a
store that fails or hangs at shutdown is given up at the deadline, every batch reported."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from metering.errors import RecordRefused, StoreUnavailable
from metering.ports import BatchResult, DuplicatePolicy, EventBatch, Store
from metering.store.postgres import PostgresStore
from metering.store.sqlite import SQLiteStore
from metering.writer import EventWriter
from tests.metering.store.builders import CODE, SUB, at, event
from tests.metering.test_writer import RecordingStore, count
from tests.support.postgres import fresh_schema
from tests.support.sqlite import write_lock

GOOD = 150


@contextlib.asynccontextmanager
async def _sqlite(tmp: Path) -> AsyncIterator[Store]:
    yield SQLiteStore(tmp / "w.db")


@contextlib.asynccontextmanager
async def _postgres(_tmp: Path) -> AsyncIterator[Store]:
    async with fresh_schema("tg_writer") as url:
        yield PostgresStore(url, max_connections=4)


#: adapter -> (its store, a transaction id it cannot hold: a lone surrogate cannot be encoded
#: for SQLite; PostgreSQL's text refuses NUL).
STORES: dict[str, tuple[Callable[[Path], AbstractAsyncContextManager[Store]], str]] = {
    "sqlite": (_sqlite, "poison-\ud800"),
    "postgres": (_postgres, "poison-\u0000"),
}


@pytest.fixture(params=sorted(STORES))
async def real(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """An opened real store and a transaction id it refuses."""
    make, poison = STORES[request.param]
    async with make(tmp_path) as store:
        await store.open()
        try:
            yield store, poison
        finally:
            await store.close()


class Reports:
    """An ``on_unwritten`` hook that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[EventBatch, BaseException]] = []

    def __call__(self, batch: EventBatch, error: BaseException) -> None:
        self.seen.append((batch, error))


def request_batch(n: int, policy: DuplicatePolicy = DuplicatePolicy.SKIP) -> EventBatch:
    """What the proxy submits per request: input and output events under one request id."""
    events = tuple(
        event(f"req{n}:{kind}", ts=at(seconds=n), properties={"type": kind, "tokens": 7})
        for kind in ("input", "output")
    )
    return EventBatch(events=events, policy=policy, origin=f"req{n}")


async def test_a_refused_batch_fails_alone_and_every_other_batch_commits(
    real: tuple[Store, str],
) -> None:
    store, poison = real
    recording = RecordingStore(store)
    reports = Reports()
    writer = EventWriter(recording, on_unwritten=reports)
    await writer.start()
    bad = EventBatch(events=(event(poison),), origin="req-bad")
    batches = [request_batch(n) for n in range(GOOD)]
    batches.insert(GOOD // 3, bad)
    # Every submitter queues before the writer's task runs: one group holds them all.
    outcomes = await asyncio.gather(
        *(writer.submit(b, admitted=True) for b in batches), return_exceptions=True
    )
    await writer.stop()
    assert recording.calls[0] == GOOD + 1  # the poisoned batch was in the group with the rest
    refused = outcomes.pop(GOOD // 3)
    assert isinstance(refused, RecordRefused)
    assert outcomes == [BatchResult(stored=True, inserted=2)] * GOOD
    assert await count(store) == 2 * GOOD
    for n in (0, GOOD // 3, GOOD - 1):
        for kind in ("input", "output"):
            stored = await store.get_event(transaction_id=f"req{n}:{kind}")
            assert stored.properties["tokens"] == 7
    # Reported once, with its request: the refused batch and nothing else.
    assert [(b.origin, e) for b, e in reports.seen] == [("req-bad", refused)]
    # Halved down to the bad batch: about 2 log2(n) writes, not one per batch.
    assert len(recording.calls) <= 2 * math.ceil(math.log2(GOOD + 1)) + 1
    assert sum(recording.calls) < 4 * (GOOD + 1)


async def test_a_split_keeps_the_order_duplicates_are_decided_in(real: tuple[Store, str]) -> None:
    store, poison = real
    writer = EventWriter(store)
    await writer.start()
    first = EventBatch(events=(event("same"), event("a")))
    duplicate = EventBatch(events=(event("same"), event("b")))  # REJECT: all or nothing
    skipped = EventBatch(events=(event("same"), event("c")), policy=DuplicatePolicy.SKIP)
    batches = [first, EventBatch(events=(event(poison),)), duplicate, skipped]
    outcomes = await asyncio.gather(*(writer.submit(b) for b in batches), return_exceptions=True)
    await writer.stop()
    assert outcomes[0] == BatchResult(stored=True, inserted=2)
    assert isinstance(outcomes[1], RecordRefused)
    assert outcomes[2] == BatchResult(stored=False, inserted=0, duplicates=(0,))
    assert outcomes[3] == BatchResult(stored=True, inserted=1, duplicates=(0,))
    stored = await store.list_events(
        external_subscription_id=SUB, code=CODE, from_ts=None, to_ts=at(days=1)
    )
    assert sorted(e.transaction_id for e in stored) == ["a", "c", "same"]


async def test_after_a_refusal_the_writer_admits_and_writes_on(real: tuple[Store, str]) -> None:
    store, poison = real
    writer = EventWriter(store)
    await writer.start()
    with pytest.raises(RecordRefused):
        await writer.submit(EventBatch(events=(event(poison),)))
    writer.admit()  # a refused record is not a failing store
    assert (await writer.submit(request_batch(1))).inserted == 2
    await writer.stop()


async def test_a_write_that_hangs_is_given_up_at_the_deadline_and_reported(
    tmp_path: Path,
) -> None:
    # The lock's holder never lets go within the store's busy timeout: each write waits on it.
    store = SQLiteStore(tmp_path / "w.db", busy_timeout=60)
    await store.open()
    reports = Reports()
    writer = EventWriter(store, on_unwritten=reports, last_attempt_seconds=0.2)
    await writer.start()
    try:
        with write_lock(tmp_path / "w.db"):
            waiting = asyncio.create_task(writer.submit(request_batch(1), admitted=True))
            await asyncio.sleep(0.2)  # the write is under way, waiting on the lock
            assert not waiting.done()
            # Set while the write already waits, unbounded: the deadline still cuts it.
            await asyncio.wait_for(writer.stop(give_up_after=0.1), timeout=30)
            with pytest.raises(StoreUnavailable, match="shutdown deadline"):
                await waiting
            late = request_batch(2)
            with pytest.raises(StoreUnavailable, match="not running"):
                await writer.submit(late, admitted=True)
    finally:
        await store.close()
    assert [b.origin for b, _ in reports.seen] == ["req1", "req2"]
    assert writer.pending_events == 0


async def test_a_failing_store_is_given_up_at_the_deadline_whole_queue_reported(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "w.db", busy_timeout=0.05)
    await store.open()
    reports = Reports()
    writer = EventWriter(store, on_unwritten=reports, max_batch_events=4)
    await writer.start()
    try:
        with write_lock(tmp_path / "w.db"):
            waiting = [
                asyncio.create_task(writer.submit(request_batch(n), admitted=True))
                for n in range(10)
            ]
            while not writer.stalled:  # noqa: ASYNC110 (the store's failure is in another connection)
                await asyncio.sleep(0.01)
            await asyncio.wait_for(writer.stop(give_up_after=0.3), timeout=30)
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    finally:
        await store.close()
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert "database is locked" in str(outcomes[0])
    # Five groups of two batches, each given up: every batch reported once.
    assert sorted(b.origin or "" for b, _ in reports.seen) == sorted(f"req{n}" for n in range(10))
    assert writer.pending_events == 0
