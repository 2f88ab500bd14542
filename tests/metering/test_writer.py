"""EventWriter: group commit over a real store, wrapped only to observe or fail its writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from metering.errors import StoreUnavailable
from metering.ports import BatchResult, DuplicatePolicy, EventBatch, Store
from metering.store.memory import MemoryStore
from metering.store.sqlite import SQLiteStore
from metering.writer import EventWriter
from tests.metering.store.builders import CODE, SUB, at, event


class RecordingStore:
    """A real store whose ``write_batches`` calls are counted, optionally held or failed.

    ``hold`` (when set) makes each call wait until the event is set; ``fail_first`` makes the
    first N calls raise StoreUnavailable (after the hold) without writing.
    """

    def __init__(self, inner: Store, *, fail_first: int = 0) -> None:
        self.inner = inner
        self.calls: list[int] = []  # batches per call
        self.fail_first = fail_first
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
        self.calls.append(len(batches))
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if len(self.calls) <= self.fail_first:
            raise StoreUnavailable("disk full")
        return await self.inner.write_batches(batches)


def one(txn: str, sub: str = SUB, n: int = 1) -> EventBatch:
    events = tuple(event(f"{txn}-{i}", sub=sub, ts=at(seconds=i)) for i in range(n))
    return EventBatch(events=events, policy=DuplicatePolicy.SKIP)


async def count(store: Store, sub: str = SUB) -> int:
    found = await store.list_events(
        external_subscription_id=sub, code=CODE, from_ts=None, to_ts=at(days=1)
    )
    return len(found)


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "w.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def started(store: Any, **options: int) -> EventWriter:
    writer = EventWriter(store, **options)
    await writer.start()
    return writer


async def test_concurrent_submitters_share_transactions(sqlite: SQLiteStore) -> None:
    recording = RecordingStore(sqlite)
    writer = await started(recording)
    results = await asyncio.gather(*(writer.submit(one(f"r{n}", n=3)) for n in range(50)))
    await writer.stop()
    assert results == [BatchResult(stored=True, inserted=3)] * 50
    assert sum(recording.calls) == 50
    assert len(recording.calls) < 10  # grouped, not one transaction per submitter
    assert await count(sqlite) == 150


async def test_groups_respect_max_batch_events(sqlite: SQLiteStore) -> None:
    recording = RecordingStore(sqlite)
    recording.hold = asyncio.Event()
    writer = await started(recording, max_batch_events=6)
    first = asyncio.create_task(writer.submit(one("first", n=10)))  # alone: over the cap
    await recording.entered.wait()
    rest = [asyncio.create_task(writer.submit(one(f"r{n}", n=3))) for n in range(5)]
    await asyncio.sleep(0)
    recording.hold.set()
    await asyncio.gather(first, *rest)
    await writer.stop()
    assert recording.calls == [1, 2, 2, 1]


async def test_result_is_durable_when_submit_returns(tmp_path: Path, sqlite: SQLiteStore) -> None:
    writer = await started(sqlite)
    result = await writer.submit(one("d", n=2))
    assert result == BatchResult(stored=True, inserted=2)
    # Another connection (as after a crash and restart) already sees the committed events.
    other = SQLiteStore(tmp_path / "w.db")
    await other.open()
    try:
        assert await count(other) == 2
    finally:
        await other.close()
    await writer.stop()


async def test_duplicates_are_reported_per_batch() -> None:
    store = MemoryStore()
    writer = await started(store)
    reject = EventBatch(events=(event("x"), event("x")))
    assert await writer.submit(reject) == BatchResult(stored=False, inserted=0, duplicates=(1,))
    assert await writer.submit(one("y")) == BatchResult(stored=True, inserted=1)
    await writer.stop()


async def test_stop_drains_the_queue(sqlite: SQLiteStore) -> None:
    writer = await started(sqlite)
    tasks = [asyncio.create_task(writer.submit(one(f"s{n}", n=2))) for n in range(20)]
    await asyncio.sleep(0)  # every submitter has queued its batch
    await writer.stop()
    assert all(t.done() for t in tasks)
    assert [t.result().inserted for t in tasks] == [2] * 20
    assert await count(sqlite) == 40
    with pytest.raises(StoreUnavailable, match="not running"):
        await writer.submit(one("late"))


async def test_full_queue_sheds_load_at_once(sqlite: SQLiteStore) -> None:
    recording = RecordingStore(sqlite)
    recording.hold = asyncio.Event()
    writer = await started(recording, max_pending=10)
    in_flight = asyncio.create_task(writer.submit(one("a", n=6)))
    await recording.entered.wait()
    queued = asyncio.create_task(writer.submit(one("b", n=4)))
    await asyncio.sleep(0)
    assert writer.pending_events == 10
    with pytest.raises(StoreUnavailable, match="queue full"):
        await writer.submit(one("c", n=1))
    with pytest.raises(StoreUnavailable, match="queue full"):
        writer.admit()
    # Usage of admitted work is queued all the same: admission is what bounds the queue.
    admitted = asyncio.create_task(writer.submit(one("d", n=1), admitted=True))
    await asyncio.sleep(0)
    assert writer.pending_events == 11
    recording.hold.set()
    assert (await admitted).inserted == 1
    assert (await in_flight).inserted == 6
    assert (await queued).inserted == 4
    assert writer.pending_events == 0
    assert (await writer.submit(one("c", n=1))).inserted == 1
    await writer.stop()


async def test_a_failed_transaction_is_retried_until_the_store_recovers(
    sqlite: SQLiteStore,
) -> None:
    recording = RecordingStore(sqlite, fail_first=3)
    writer = await started(recording)
    first = asyncio.create_task(writer.submit(one("kept", n=2), admitted=True))
    await recording.entered.wait()
    while len(recording.calls) < 2:  # noqa: ASYNC110 (the writer is retrying a failed write)
        await asyncio.sleep(0.01)
    assert writer.stalled
    with pytest.raises(StoreUnavailable, match="failing"):
        writer.admit()  # new work is refused while the store fails...
    with pytest.raises(StoreUnavailable, match="failing"):
        await writer.submit(one("new"))
    later = asyncio.create_task(writer.submit(one("late"), admitted=True))  # ...produced usage not
    assert (await first).inserted == 2
    assert (await later).inserted == 1
    assert not writer.stalled
    writer.admit()
    assert recording.calls[:4] == [1, 1, 1, 1]  # three failures, then the same group succeeded
    assert await count(sqlite) == 3
    await writer.stop()


async def test_stop_gives_up_on_a_dead_store_at_its_deadline(sqlite: SQLiteStore) -> None:
    recording = RecordingStore(sqlite, fail_first=1000)
    writer = await started(recording)
    doomed = asyncio.create_task(writer.submit(one("doomed"), admitted=True))
    await recording.entered.wait()
    await writer.stop(give_up_after=0.3)
    with pytest.raises(StoreUnavailable, match="disk full"):
        await doomed
    assert await count(sqlite) == 0


async def test_other_errors_reach_the_callers_and_the_writer_goes_on() -> None:
    class Broken(RecordingStore):
        async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
            self.calls.append(len(batches))
            if len(self.calls) == 1:
                raise ValueError("bad row")
            return await self.inner.write_batches(batches)

    store = Broken(MemoryStore())
    writer = await started(store)
    with pytest.raises(ValueError, match="bad row"):
        await writer.submit(one("a"))
    assert (await writer.submit(one("b"))).inserted == 1
    await writer.stop()


async def test_cancelled_caller_still_gets_its_usage_written(sqlite: SQLiteStore) -> None:
    recording = RecordingStore(sqlite)
    recording.hold = asyncio.Event()
    writer = await started(recording)
    task = asyncio.create_task(writer.submit(one("gone", n=2)))
    await recording.entered.wait()
    task.cancel()
    recording.hold.set()
    await writer.stop()
    assert await count(sqlite) == 2


async def test_lifecycle_errors() -> None:
    writer = EventWriter(MemoryStore())
    with pytest.raises(StoreUnavailable):
        await writer.submit(one("early"))
    await writer.stop()  # stopping a writer that never started is a no-op
    await writer.start()
    with pytest.raises(RuntimeError, match="already started"):
        await writer.start()
    await writer.stop()
    with pytest.raises(ValueError, match=">= 1"):
        EventWriter(MemoryStore(), max_pending=0)
