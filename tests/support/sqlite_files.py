"""Damage an SQLite file the way disks and people do: bytes of one page overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def root_page(db: Path, name: str) -> tuple[int, int]:
    """(byte offset, size) of the root page of table or index ``name``."""
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,))
        (page,) = found.fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    return (page - 1) * size, size


def overwrite(db: Path, offset: int, data: bytes) -> None:
    """Write ``data`` over the file's bytes from ``offset``, in place."""
    with db.open("r+b") as file:
        file.seek(offset)
        file.write(data)
