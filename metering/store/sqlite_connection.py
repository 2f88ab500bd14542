"""Opening SQLite connections the way the adapter needs them, and its error translation."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from metering.errors import StoreBroken, StoreUnavailable
from metering.store.sqlite_events import decimal_functions

__all__ = [
    "WriterBusy",
    "classify",
    "connect",
    "in_thread",
    "rollback",
    "transaction_here",
    "transaction_in_thread",
]

T = TypeVar("T")


#: Primary result codes that say the file itself cannot be used: damaged (CORRUPT, NOTADB,
#: FORMAT), unreadable or unwritable (IOERR, CANTOPEN, NOLFS), or made read-only, which
#: includes READONLY_DBMOVED (the file was renamed or deleted under the connection).
#: Waiting does not cure them, unlike BUSY, LOCKED or FULL.
_BROKEN_CODES = frozenset(
    {
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_FORMAT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOLFS,
        sqlite3.SQLITE_READONLY,
    }
)


def classify(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The store category of an SQLite error: StoreBroken for a file that cannot be used
    (see ``_BROKEN_CODES``), StoreUnavailable for other operational failures (locked, full),
    None for errors of the data or the statement (a constraint, a value too big), which are
    the caller's to handle."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _BROKEN_CODES:
        return StoreBroken(f"sqlite: {exc}")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"sqlite: {exc}")
    return None


async def rollback(conn: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so by itself."""
    if conn.in_transaction:
        # SQLite may roll back on its own (e.g. on SQLITE_FULL) between the check and here,
        # and on a damaged file the rollback can fail too: the first error is the one to report.
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")


class WriterBusy(Exception):
    """Another connection holds the write lock (raised only by :func:`transaction_here`)."""


def _transaction(db: sqlite3.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    return _run_and_commit(db, op)


def _run_and_commit(db: sqlite3.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
    try:
        result = op(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            # SQLite may have rolled back on its own (e.g. on SQLITE_FULL); on a damaged file
            # the rollback can fail too. The error being raised is the one to report.
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return result


def transaction_here(
    conn: aiosqlite.Connection, op: Callable[[sqlite3.Connection], T], *, busy_timeout_ms: int
) -> T:
    """Run ``op`` in one ``BEGIN IMMEDIATE`` transaction on the calling thread, never waiting.

    For small writes on the event loop's thread: handing them to the connection's thread costs
    about as much CPU as the write itself (queue, thread wake-up, GIL hand-overs, the loop's
    wake-up; bench/RESULTS.md). Only the lock could make this wait (commits never checkpoint,
    see :mod:`~metering.store.sqlite_checkpoint`), so ``BEGIN`` runs with no busy timeout and
    raises :class:`WriterBusy` at once when another connection holds the lock; the caller then
    waits for it on the connection's thread instead. ``conn`` must be idle (the store's write
    lock) and opened by :func:`connect` (which allows use from any thread).
    """
    db: sqlite3.Connection = conn._conn  # aiosqlite's sqlite3 connection, as below
    db.execute("PRAGMA busy_timeout = 0")
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode == sqlite3.SQLITE_BUSY:
            raise WriterBusy(str(exc)) from exc
        raise
    finally:
        db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return _run_and_commit(db, op)


async def in_thread(conn: aiosqlite.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``op`` on the connection's thread inside whatever transaction is open there."""
    db: sqlite3.Connection = conn._conn  # aiosqlite's sqlite3 connection, as below
    result: T = await conn._execute(op, db)  # type: ignore[no-untyped-call]
    return result


async def transaction_in_thread(
    conn: aiosqlite.Connection, op: Callable[[sqlite3.Connection], T]
) -> T:
    """Run ``op`` in one ``BEGIN IMMEDIATE`` transaction as ONE call on the connection's thread.

    Each aiosqlite statement is a round trip to its thread (queue put, thread wake-up,
    ``call_soon_threadsafe`` back to the loop): an event write made four of them, a third of
    its CPU (bench/RESULTS.md). aiosqlite has no public way to run a function on its thread;
    ``_execute`` is the one its own methods all use, and ``_conn`` its sqlite3 connection.
    """
    db: sqlite3.Connection = conn._conn
    result: T = await conn._execute(_transaction, db, op)  # type: ignore[no-untyped-call]
    return result


async def connect(path: Path, *, busy_timeout_ms: int, query_only: bool) -> aiosqlite.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=NORMAL.

    The writer (``query_only=False``) gets the exact decimal SQL functions rollups need.
    """
    # check_same_thread=False: the writer's small transactions run on the event loop's thread
    # (transaction_here), the rest on aiosqlite's; the store's write lock keeps them apart.
    conn = await aiosqlite.connect(
        path, isolation_level=None, iter_chunk_size=1024, check_same_thread=False
    )
    ready = False
    try:
        await conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        # 8 MiB of page cache per connection (SQLite's default is 2 MiB): index pages of a
        # large event table stay hot without risking the gateway's memory budget.
        await conn.execute("PRAGMA cache_size = -8192")
        if query_only:
            await conn.execute("PRAGMA query_only = ON")
        else:
            # Commits never checkpoint: the store's Checkpointer does it on its own connection.
            # A WAL grown by a burst is cut back to 64 MiB when SQLite restarts it.
            await conn.execute("PRAGMA wal_autocheckpoint = 0")
            await conn.execute("PRAGMA journal_size_limit = 67108864")
            decimal_add, decimal_max = decimal_functions()
            await conn.create_function("decimal_add", 2, decimal_add, deterministic=True)
            await conn.create_function("decimal_max", 2, decimal_max, deterministic=True)
        ready = True
    finally:
        if not ready:
            await conn.close()
    return conn
