"""SQLite for tests: a store made to fail for real, by another connection holding its lock."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

__all__ = ["write_lock"]


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's exclusive lock on the file from a second connection (as another process
    would): every write of the store waits for its busy timeout, then fails as locked."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()
