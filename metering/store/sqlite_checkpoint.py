"""WAL checkpoints of the SQLite adapter, off the writer's commit path.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that
commit copies the pages into the database file and fsyncs it, so one metered request in a few
hundred waits milliseconds for a disk flush, and the writer thread spends about a sixth of its
time there (profile in bench/RESULTS.md). The writer connection therefore runs with
``wal_autocheckpoint = 0`` and this task checkpoints on its own connection (its own thread):
``PASSIVE`` never blocks the writer or the readers, and SQLite restarts the WAL from its start
once a checkpoint has copied all of it, so the file stays about as large as the pages written
between two checkpoints.

Durability is unchanged: a commit is durable in the WAL (``synchronous=NORMAL``) whether or
not a checkpoint has copied it yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import aiosqlite

from metering.store.debounce import Debounced

__all__ = ["Checkpointer"]


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` after writes, at most once per ``interval`` s.

    :meth:`wrote` is called after every commit; it only sets a flag. A failed checkpoint (a
    lock held by another process, an I/O error) is counted in :attr:`failures`, handed to
    ``failed`` (the store looks for a damaged file in it) and tried again later: the commits
    themselves never depend on it.
    """

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        interval: float = 0.25,
        failed: Callable[[sqlite3.Error], None] | None = None,
    ) -> None:
        self._conn = conn
        self._failed = failed
        # Pages written again between two checkpoints are copied once, not per commit.
        self._schedule = Debounced(
            self.checkpoint, interval=interval, name="tallygate-sqlite-checkpoint"
        )
        self.checkpoints = 0
        self.failures = 0

    def start(self) -> None:
        """Start the background task (once)."""
        self._schedule.start()

    def wrote(self) -> None:
        """Note that a transaction was committed (cheap: called on the hot path)."""
        self._schedule.poke()

    async def checkpoint(self) -> bool:
        """Copy what the WAL holds into the database file now (PASSIVE); whether it could."""
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            # Busy (another process checkpoints) or I/O: the WAL keeps the data; retry later.
            self.failures += 1
            if self._failed is not None:
                self._failed(exc)
            return False
        self.checkpoints += 1
        return True

    async def stop(self) -> None:
        """End the task, then checkpoint what is left, and close the connection."""
        await self._schedule.stop()
        try:
            await self.checkpoint()
        finally:
            await self._conn.close()
