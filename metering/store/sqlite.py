"""SQLite :class:`~metering.ports.Store` (aiosqlite): the default single-node store.

Two connections to one WAL file: a writer, used under an asyncio lock so each write
transaction (``BEGIN IMMEDIATE``) is alone on it, and a query-only reader, so reads never see
a write in progress and never wait for one. A third connection checkpoints the WAL in the
background (:mod:`~metering.store.sqlite_checkpoint`), so no commit waits for a disk flush.
``synchronous=NORMAL``: a committed transaction survives a killed process.

Operational failures (locked, full) surface as :class:`~metering.errors.StoreUnavailable`.
A file that cannot be trusted (damaged, unreadable, deleted or replaced under the process:
:mod:`~metering.store.sqlite_health`) surfaces as :class:`~metering.errors.StoreBroken` and
makes the store :meth:`~SQLiteStore.broken` for good: every later call refuses at once, and
no commit is acknowledged unless the path still names the file it went to.
An event batch with a value SQLite cannot hold surfaces as
:class:`~metering.errors.RecordRefused` (:mod:`~metering.store.refusal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from metering.errors import StoreBroken, StoreUnavailable
from metering.models import BillableMetric, Event
from metering.ports import (
    AggregateQuery,
    BatchResult,
    EventBatch,
    GroupAggregate,
    Window,
    WindowAggregate,
)
from metering.store import sqlite_query, sqlite_series
from metering.store.debounce import Debounced
from metering.store.folding import GroupFolder
from metering.store.refusal import VALUE_ERRORS, refused_on
from metering.store.rollups import RollupKey, RollupSpec, rollup_deltas, spec_for
from metering.store.sql_facade import SqlFacade
from metering.store.sqlite_checkpoint import Checkpointer
from metering.store.sqlite_connection import (
    WriterBusy,
    classify,
    connect,
    in_thread,
    rollback,
    transaction_here,
    transaction_in_thread,
)
from metering.store.sqlite_dialect import SQLiteDialect
from metering.store.sqlite_events import (
    add_rollups,
    changed_specs,
    load_specs,
    rebuild_rollups,
    stored_params,
    write_batch,
)
from metering.store.sqlite_health import FileIdentity, check_location, quick_check, unusable
from metering.store.sqlite_schema import migrate
from metering.store.sqlite_tail import fold_tail, mark_folded

__all__ = ["SQLiteStore"]

T = TypeVar("T")

#: Event writes up to this size run on the event loop's thread, insert only (``write_batches``).
#: 128 rather than 32: at c=64 a group commit is ~128 events (bench/RESULTS.md).
_WRITE_HERE_MAX_EVENTS = 128

#: A batch SQLite cannot hold (``sqlite3.DataError``: a value too big; IntegrityError: a CHECK)
#: or cannot even be encoded for it: that batch's fault, not the store's.
_NOT_STORABLE: tuple[type[Exception], ...] = (
    sqlite3.DataError,
    sqlite3.IntegrityError,
    *VALUE_ERRORS,
)


class SQLiteStore(SqlFacade[aiosqlite.Connection]):
    """The SQLite adapter; see the module docstring.

    ``rollup_extra_keys`` are event properties kept in every code's rollups on top of its
    metric's filter keys (the gateway passes ``("key_id",)`` so per-key usage is a rollup
    read too). ``busy_timeout`` (seconds) is how long a statement waits for another
    process's lock before the store reports itself unavailable. ``integrity_check`` runs
    ``PRAGMA quick_check`` at open (it reads the whole file). ``on_broken`` is called once,
    with the reason, when an open store finds itself broken (a failed open raises instead).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        rollup_extra_keys: Sequence[str] = (),
        busy_timeout: float = 5.0,
        integrity_check: bool = True,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        self._path = Path(path)
        self._busy_timeout_ms = max(0, round(busy_timeout * 1000))
        self._integrity_check = integrity_check
        self._on_broken = on_broken
        self._identity: FileIdentity | None = None
        self._broken: str | None = None
        self._serving = False  # open() completed: breakage is reported to on_broken
        self._extra_keys = tuple(rollup_extra_keys)
        super().__init__(SQLiteDialect())
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: Checkpointer | None = None
        self._tail: Debounced | None = None
        self._write_lock = asyncio.Lock()
        # code -> spec its rollups are built with; mirrors rollup_specs, changed under the lock.
        self._specs: dict[str, RollupSpec] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or open the file, migrate its schema and bring rollups up to date."""
        if self._writer is not None:
            raise RuntimeError("SQLiteStore is already open")
        if str(self._path) == ":memory:":
            raise ValueError("SQLiteStore needs a file path; use MemoryStore for memory")
        check_location(self._path)
        with self._guarded():
            self._writer = await connect(
                self._path, busy_timeout_ms=self._busy_timeout_ms, query_only=False
            )
            opened = False
            try:
                self._identity = FileIdentity(self._path)
                if self._integrity_check:
                    await quick_check(self._writer, self._path)
                await migrate(self._writer)
                await self._reconcile_rollups()
                self._reader = await connect(
                    self._path, busy_timeout_ms=self._busy_timeout_ms, query_only=True
                )
                self._checkpointer = Checkpointer(
                    await connect(
                        self._path, busy_timeout_ms=self._busy_timeout_ms, query_only=False
                    ),
                    failed=self._checkpoint_failed,
                )
                self._checkpointer.start()
                self._checkpointer.wrote()  # what open() migrated or rebuilt
                self._tail = Debounced(
                    self._fold_in_background, interval=0.05, name="tallygate-rollup-fold"
                )
                # A tail left by an earlier process was folded by _reconcile_rollups above.
                self._tail.start()
                opened = self._serving = True
            finally:
                if not opened:
                    await self.close()

    async def _reconcile_rollups(self) -> None:
        # Metrics or rollup_extra_keys may differ from what the rollups were built with.
        async def reconcile(conn: aiosqlite.Connection) -> dict[str, RollupSpec | None]:
            current = await load_specs(conn)
            self._specs = current
            await self._fold_in(conn)  # a tail left by an earlier process, under its specs
            metrics = await self._tables.metrics.all(conn)
            wanted = {m.code: spec_for(m, self._extra_keys) for m in metrics}
            changes = changed_specs(current, wanted)
            for code, spec in changes.items():
                await rebuild_rollups(conn, code, spec, self._codec)
            return changes

        await self._write(reconcile, after_commit=self._apply_specs)

    async def close(self) -> None:
        """Close the connections (idempotent), folding the rollup tail and checkpointing first."""
        self._serving = False
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail.stop()
            # Not needed for exactness (readers count the tail), only to leave it short: so
            # not worth waiting for another process's lock (a shutdown must end in its grace).
            with contextlib.suppress(StoreUnavailable):
                await self.fold(wait=False)
        writer, reader, checkpointer = self._writer, self._reader, self._checkpointer
        self._writer = self._reader = self._checkpointer = None
        if checkpointer is not None:
            await checkpointer.stop()
        if reader is not None:
            await reader.close()
        if writer is not None:
            await writer.close()

    async def ping(self) -> bool:
        """Whether the store is not :meth:`broken` and the reader reads the file's header
        (``PRAGMA schema_version``: a header overwritten with garbage fails it)."""
        if self._reader is None or self.broken() is not None:
            return False
        try:
            with self._guarded():
                await self._reader.execute_fetchall("PRAGMA schema_version")
        except StoreUnavailable:
            return False
        return True

    def broken(self) -> str | None:
        """Why the store cannot be used until an operator acts, else None (see the module
        docstring). While none is known, checks that the path still names the opened file."""
        if self._broken is None and self._identity is not None:
            changed = self._identity.changed()
            if changed is not None:
                self._break(changed)
        return self._broken

    # -- plumbing ----------------------------------------------------------------------------
    def _break(self, reason: str) -> None:
        if self._broken is not None:
            return
        self._broken = reason
        if self._serving and self._on_broken is not None:
            self._on_broken(reason)

    def _checkpoint_failed(self, exc: sqlite3.Error) -> None:
        if isinstance(classify(exc), StoreBroken):
            self._break(unusable(self._path, exc))

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """SQLite's errors as categories (:func:`classify`); refuses at once once the store is
        broken, and breaks it for good when SQLite reports the file itself unusable."""
        if self._broken is not None:
            raise StoreBroken(self._broken)
        try:
            yield
        except sqlite3.DatabaseError as exc:
            category = classify(exc)
            if category is None:
                raise
            if isinstance(category, StoreBroken):
                self._break(unusable(self._path, exc))
                category = StoreBroken(self._broken or str(category))
            raise category from exc

    def _committed(self) -> None:
        """After a commit: StoreBroken if the path no longer names the file it went to (the
        caller then treats the commit as not made; its events are written again elsewhere or
        reported, never acknowledged)."""
        if (reason := self.broken()) is not None:
            raise StoreBroken(reason)

    def _wrote(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.wrote()

    def _apply_specs(self, changes: dict[str, RollupSpec | None]) -> None:
        for code, spec in changes.items():
            if spec is None:
                self._specs.pop(code, None)
            else:
                self._specs[code] = spec

    async def _read(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        if self._reader is None:
            raise StoreUnavailable("sqlite store is not open")
        with self._guarded():
            return await op(self._reader)

    async def _write(
        self,
        op: Callable[[aiosqlite.Connection], Awaitable[T]],
        *,
        after_commit: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``op`` in one ``BEGIN IMMEDIATE`` transaction on the writer, alone on it."""
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreUnavailable("sqlite store is not open")
            with self._guarded():
                await conn.execute("BEGIN IMMEDIATE")
                committed = False
                try:
                    result = await op(conn)
                    await conn.execute("COMMIT")
                    committed = True
                finally:
                    if not committed:
                        await rollback(conn)
            self._committed()
            self._wrote()
            if after_commit is not None:
                # Still under the lock: no other write can see the state before this update.
                after_commit(result)
            return result

    # -- billable metrics --------------------------------------------------------------------
    async def put_metric(self, metric: BillableMetric) -> None:
        """Insert or replace a metric; rebuilds rollups of codes whose spec changes."""

        async def put(conn: aiosqlite.Connection) -> dict[str, RollupSpec | None]:
            rows = await conn.execute_fetchall(
                "SELECT code FROM metrics WHERE id = ?", (metric.id,)
            )
            old_codes = [row[0] for row in rows]
            await self._fold_in(conn)  # rebuilds start from a wholly folded table
            await self._tables.metrics.put(conn, metric)
            wanted = {metric.code: spec_for(metric, self._extra_keys)}
            current = {metric.code: self._specs[metric.code]} if metric.code in self._specs else {}
            for old in old_codes:
                if old != metric.code and old in self._specs:
                    current[old] = self._specs[old]  # the code was renamed: drop its rollups
            changes = changed_specs(current, wanted)
            for code, spec in changes.items():
                await rebuild_rollups(conn, code, spec, self._codec)
            return changes

        await self._write(put, after_commit=self._apply_specs)

    async def delete_metric(self, id: str) -> None:
        """Remove a metric and its code's rollups (its events stay)."""

        async def delete(conn: aiosqlite.Connection) -> dict[str, RollupSpec | None]:
            rows = list(await conn.execute_fetchall("SELECT code FROM metrics WHERE id = ?", (id,)))
            await self._tables.metrics.delete(conn, "id", id)
            code = rows[0][0]
            await rebuild_rollups(conn, code, None, self._codec)
            return {code: None}

        await self._write(delete, after_commit=self._apply_specs)

    # -- events ------------------------------------------------------------------------------
    async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
        """Store the batches in one transaction, each atomically.

        A small write (up to 128 events: a few dozen requests' usage, or one Lago batch) only
        inserts, on the loop's thread, and leaves its rollups to the background fold
        (:mod:`sqlite_tail`). A larger one runs on the connection's thread and folds the tail
        along with its own events.
        """
        with refused_on(_NOT_STORABLE):
            params = stored_params(batches, self._codec)

        def insert(db: sqlite3.Connection) -> tuple[list[BatchResult], list[Event]]:
            results: list[BatchResult] = []
            stored: list[Event] = []
            for number, (batch, rows) in enumerate(zip(batches, params, strict=True)):
                result, inserted = write_batch(db, batch, rows, f"batch{number}")
                results.append(result)
                stored.extend(inserted)
            return results, stored

        def write_to_tail(db: sqlite3.Connection) -> list[BatchResult]:
            return insert(db)[0]

        def write_and_fold(db: sqlite3.Connection) -> list[BatchResult]:
            # Specs change only under the write lock, which is held while this runs.
            deltas: GroupFolder[RollupKey] = GroupFolder()
            fold_tail(db, self._specs, self._codec, deltas)
            results, stored = insert(db)
            rollup_deltas(stored, self._specs, deltas)
            add_rollups(db, deltas)
            mark_folded(db)
            return results

        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreUnavailable("sqlite store is not open")
            with self._guarded(), refused_on(_NOT_STORABLE):
                results = None
                if sum(map(len, params)) <= _WRITE_HERE_MAX_EVENTS:
                    # The hand-over to the connection's thread would cost as much as this.
                    with contextlib.suppress(WriterBusy):  # another process holds the lock
                        results = transaction_here(
                            conn, write_to_tail, busy_timeout_ms=self._busy_timeout_ms
                        )
                if results is None:
                    # SQLite's own work (GIL released) overlaps with the loop's there.
                    results = await transaction_in_thread(conn, write_and_fold)
                elif self._tail is not None:
                    self._tail.poke()
            self._committed()
            self._wrote()
            return results

    async def fold(self, *, wait: bool = True) -> None:
        """Fold the rollup tail now (the background task does this after small writes).

        ``wait=False``: StoreUnavailable at once if another connection holds the lock, rather
        than after the busy timeout (for :meth:`close`, which leaves the connection after).
        """
        async with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreUnavailable("sqlite store is not open")
            with self._guarded():
                if not wait:
                    await conn.execute("PRAGMA busy_timeout = 0")
                await transaction_in_thread(conn, self._fold_all)
            self._wrote()

    async def _fold_in_background(self) -> bool:
        try:
            await self.fold()
        except StoreUnavailable:
            # Locked by another process, or I/O: readers still count the tail; try again.
            return False
        return True

    def _fold_all(self, db: sqlite3.Connection) -> None:
        # Under the write lock, in the open transaction (specs cannot change meanwhile).
        deltas: GroupFolder[RollupKey] = GroupFolder()
        if fold_tail(db, self._specs, self._codec, deltas):
            add_rollups(db, deltas)
            mark_folded(db)

    async def _fold_in(self, conn: aiosqlite.Connection) -> None:
        """Fold the tail inside the transaction open on ``conn`` (before a rebuild)."""
        await in_thread(conn, self._fold_all)

    async def aggregate(self, query: AggregateQuery) -> list[GroupAggregate]:
        """Count, sum and max per group: whole days and hours from rollups, edges from events."""
        spec = self._specs.get(query.code)
        return await self._read(lambda conn: sqlite_query.aggregate(conn, query, spec, self._codec))

    async def aggregate_series(
        self, query: AggregateQuery, window: Window
    ) -> list[WindowAggregate]:
        """Count, sum and max per UTC window and group: whole windows from rollups."""
        spec = self._specs.get(query.code)
        return await self._read(
            lambda conn: sqlite_series.aggregate_series(conn, query, window, spec, self._codec)
        )
