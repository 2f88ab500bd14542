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

import asyncio
import contextlib
import sqlite3

import aiosqlite

__all__ = ["Checkpointer"]


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` after writes, at most once per ``interval`` s.

    :meth:`wrote` is called after every commit; it only sets a flag. A failed checkpoint (a
    lock held by another process, an I/O error) is counted in :attr:`failures` and retried
    after the next write: the commits themselves never depend on it.
    """

    def __init__(self, conn: aiosqlite.Connection, *, interval: float = 0.25) -> None:
        self._conn = conn
        self._interval = interval
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.checkpoints = 0
        self.failures = 0

    def start(self) -> None:
        """Start the background task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tallygate-sqlite-checkpoint")

    def wrote(self) -> None:
        """Note that a transaction was committed (cheap: called on the hot path)."""
        self._dirty.set()

    async def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file now (PASSIVE)."""
        try:
            await self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            # Busy (another process checkpoints) or I/O: the WAL keeps the data; retry later.
            self.failures += 1
        else:
            self.checkpoints += 1

    async def stop(self) -> None:
        """End the task, then checkpoint what is left, and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.checkpoint()
        finally:
            await self._conn.close()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.checkpoint()
            # Pages written again before the next checkpoint are copied once, not per commit.
            await asyncio.sleep(self._interval)
