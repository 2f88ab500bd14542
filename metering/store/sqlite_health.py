"""Whether the SQLite adapter's file can be trusted: before opening it, at open, and while open.

SQLite reports damage only when a statement touches a damaged page, and a file deleted or
replaced under an open connection is no error at all: the connection goes on reading and
writing the old inode, so commits "succeed" into a file nobody will ever open again. The
adapter therefore checks, besides classifying SQLite's own errors
(:func:`~metering.store.sqlite_connection.classify`):

- before opening: the directory exists, and no ``-wal`` file is left without its database
  (SQLite would start an empty database and replay the orphan log into it);
- at open: ``PRAGMA quick_check`` over the whole file (skippable: it reads every page);
- while open: :class:`FileIdentity`, the device and inode the path named at open, compared
  with what it names now (one ``stat``, about a microsecond).

Every message here says what is wrong and what the operator can do about it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import aiosqlite

from metering.errors import StoreBroken

__all__ = ["FileIdentity", "check_location", "damaged", "quick_check", "unusable"]

#: How many of quick_check's findings a message quotes (it lists up to 100).
_QUOTED_FINDINGS = 3


def damaged(path: Path, why: str) -> str:
    """The message for a file SQLite found damaged (``why`` is SQLite's own words)."""
    return (
        f"the SQLite store {path} is damaged ({why}): with tallygate stopped, restore the "
        f"file from a backup, or salvage what it holds with `sqlite3 {path} .recover | "
        f"sqlite3 <new file>` and point store.url at the new file"
    )


def unusable(path: Path, exc: sqlite3.Error) -> str:
    """The message for an SQLite error that says the file cannot be used (see
    :func:`~metering.store.sqlite_connection.classify`)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_READONLY:
        return (
            f"the SQLite store {path} cannot be written ({exc}): the file was made read-only, "
            f"or moved or deleted under tallygate; give it back its permissions or put it "
            f"back, then restart tallygate"
        )
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOLFS):
        return (
            f"the SQLite store {path} cannot be read or written ({exc}): check the disk and "
            f"the file, then restart tallygate"
        )
    return damaged(path, str(exc))


def check_location(path: Path) -> None:
    """Raise StoreBroken unless ``path`` can be opened as a store: its directory exists and
    no write-ahead log remains without the database it belongs to."""
    if not path.parent.is_dir():
        raise StoreBroken(
            f"the SQLite store's directory {path.parent} does not exist: create it, or point "
            f"store.url at an existing directory"
        )
    wal = path.with_name(path.name + "-wal")
    if not path.exists() and wal.exists():
        raise StoreBroken(
            f"{wal} exists but the database {path} does not: the database file was removed or "
            f"moved while its write-ahead log remained. Put the database file back (the log "
            f"holds its latest commits), or delete {wal} and {path.name}-shm to start empty"
        )


async def quick_check(conn: aiosqlite.Connection, path: Path) -> None:
    """Run ``PRAGMA quick_check`` (every page, not the index contents); StoreBroken if it
    finds anything. It reads the whole file: about as long as reading it from disk."""
    rows = await conn.execute_fetchall("PRAGMA quick_check")
    # A row may hold several lines, the first naming the database ("*** in database main ***").
    lines = (line for row in rows for line in str(row[0]).splitlines())
    findings = [line for line in lines if line and not line.startswith("***")]
    if findings != ["ok"]:
        quoted = "; ".join(findings[:_QUOTED_FINDINGS])
        more = len(findings) - _QUOTED_FINDINGS
        if more > 0:
            quoted += f"; and {more} more"
        raise StoreBroken(damaged(path, f"integrity check: {quoted}"))


class FileIdentity:
    """The file a path named when the store opened it, to notice a deletion or replacement."""

    __slots__ = ("_device", "_fspath", "_inode", "path")

    def __init__(self, path: Path) -> None:
        """Remember what ``path`` names now (call it right after the connection opened it)."""
        stat = os.stat(path)
        self.path = path
        self._fspath = os.fspath(path)  # asked on every admission: no Path conversion each time
        self._device = stat.st_dev
        self._inode = stat.st_ino

    def changed(self) -> str | None:
        """Why the path no longer names the opened file, or None if it still does."""
        try:
            stat = os.stat(self._fspath)
        except FileNotFoundError:
            return (
                f"the SQLite store {self.path} was deleted while tallygate had it open: stop "
                f"tallygate, put the file back from a backup, and start again"
            )
        except OSError as exc:
            return f"the SQLite store {self.path} cannot be reached: {exc.strerror}"
        if (stat.st_dev, stat.st_ino) != (self._device, self._inode):
            return (
                f"the SQLite store {self.path} was replaced by another file while tallygate "
                f"had it open (tallygate still holds the old one): restart tallygate to use "
                f"the new file"
            )
        return None
