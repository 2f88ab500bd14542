"""A damaged, deleted or replaced SQLite file, for real: the store says so (StoreBroken), at
open when it can, at the first call that meets the damage otherwise, and from then on for
every call, without acknowledging a commit the file at its path does not hold."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from metering.errors import StoreBroken, StoreUnavailable
from metering.ports import EventBatch
from metering.store.sqlite import SQLiteStore
from metering.store.sqlite_connection import classify
from tests.metering.store.builders import CODE, at, customer, event, metric
from tests.support.sqlite_files import overwrite, root_page


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tallygate.db"


def batch(*ids: str) -> list[EventBatch]:
    return [EventBatch(events=tuple(event(i, ts=at(minutes=n)) for n, i in enumerate(ids)))]


async def filled(db: Path) -> None:
    """A store file with a metric, a customer and some events, closed (WAL folded in)."""
    store = SQLiteStore(db)
    await store.open()
    try:
        await store.put_metric(metric())
        await store.put_customer(customer())
        await store.write_batches(batch(*(f"t{i}" for i in range(50))))
    finally:
        await store.close()


def truncate_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def exists(path: Path) -> bool:
    return path.exists()


class Told:
    """An ``on_broken`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


async def test_a_header_of_garbage_refuses_to_open(db: Path) -> None:
    await filled(db)
    overwrite(db, 0, b"not a database at all. " * 5)
    store = SQLiteStore(db)
    with pytest.raises(StoreBroken, match=r"is damaged \(file is not a database\)") as caught:
        await store.open()
    assert str(db) in str(caught.value)
    assert ".recover" in str(caught.value)  # what to do
    assert not await store.ping()


async def test_a_truncated_file_refuses_to_open(db: Path) -> None:
    await filled(db)
    truncate_half(db)
    with pytest.raises(StoreBroken, match="is damaged"):
        await SQLiteStore(db).open()


async def test_damage_only_writes_meet_is_found_at_open_or_breaks_the_store_at_once(
    db: Path,
) -> None:
    await filled(db)
    # The idempotency index: every event write goes through it, usage reads never do.
    offset, size = root_page(db, "sqlite_autoindex_events_1")
    overwrite(db, offset, os.urandom(size))

    with pytest.raises(StoreBroken, match="integrity check"):
        await SQLiteStore(db).open()

    told = Told()
    store = SQLiteStore(db, integrity_check=False, on_broken=told)
    await store.open()
    try:
        assert await store.get_metric(code=CODE)  # reads do not meet the damage
        assert store.broken() is None
        with pytest.raises(StoreBroken, match="is damaged"):
            await store.write_batches(batch("new"))
        reason = store.broken()
        assert reason is not None
        assert "is damaged" in reason
        assert told.reasons == [reason]
        # From now on nothing is served, not even what could still be read.
        with pytest.raises(StoreBroken):
            await store.get_metric(code=CODE)
        with pytest.raises(StoreBroken):
            await store.write_batches(batch("again"))
        assert not await store.ping()
        assert told.reasons == [reason]  # told once
    finally:
        await store.close()


async def test_a_deleted_file_is_noticed_and_no_commit_to_it_is_acknowledged(db: Path) -> None:
    told = Told()
    store = SQLiteStore(db, on_broken=told)
    await store.open()
    try:
        await store.write_batches(batch("before"))
        os.unlink(db)
        # The commit lands in the deleted file: reported as not made.
        with pytest.raises(StoreBroken, match="was deleted while tallygate had it open"):
            await store.write_batches(batch("into the void"))
        assert store.broken() == told.reasons[0]
        assert len(told.reasons) == 1
    finally:
        await store.close()


async def test_a_replaced_file_is_noticed_before_any_write(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    try:
        await store.write_batches(batch("before"))
        copy = db.with_name("copy.db")
        shutil.copy(db, copy)
        os.replace(copy, db)
        reason = store.broken()
        assert reason is not None
        assert "was replaced by another file" in reason
        with pytest.raises(StoreBroken, match="replaced"):
            await store.write_batches(batch("after"))
    finally:
        await store.close()


async def test_a_write_ahead_log_without_its_database_refuses_to_open(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.write_batches(batch("t1"))
    wal = db.with_name(db.name + "-wal")
    kept = db.with_name("kept-wal")
    shutil.copy(wal, kept)  # the log as a crash would leave it
    await store.close()
    os.unlink(db)
    os.replace(kept, wal)
    with pytest.raises(StoreBroken, match=r"exists but the database .* does not"):
        await SQLiteStore(db).open()
    assert not exists(db)  # no empty database was made in its place


def test_errors_of_the_data_are_no_store_failure(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "data.db", isolation_level=None)
    try:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")
        conn.execute("INSERT INTO t (v) VALUES ('a')")
        with pytest.raises(sqlite3.IntegrityError) as duplicate:
            conn.execute("INSERT INTO t (v) VALUES ('a')")
        with pytest.raises(sqlite3.IntegrityError) as missing:
            conn.execute("INSERT INTO t (v) VALUES (NULL)")
        with pytest.raises(sqlite3.DataError) as too_big:
            conn.execute("SELECT zeroblob(?)", (2**31,))
    finally:
        conn.close()
    assert classify(duplicate.value) is None
    assert classify(missing.value) is None
    assert classify(too_big.value) is None


def test_a_lock_is_unavailable_and_damage_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("CREATE TABLE t (v)")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("INSERT INTO t VALUES (1)")
    finally:
        holder.close()
        waiter.close()
    category = classify(locked.value)
    assert isinstance(category, StoreUnavailable)
    assert not isinstance(category, StoreBroken)

    path.write_bytes(os.urandom(4096))
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError) as garbage:
            conn.execute("SELECT * FROM sqlite_master")
    finally:
        conn.close()
    assert isinstance(classify(garbage.value), StoreBroken)
