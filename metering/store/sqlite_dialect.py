"""The SQLite adapter's side of the SQL shared with PostgreSQL (:mod:`sql_dialect`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from metering.store.codec import Row

__all__ = ["SQLiteDialect"]


class SQLiteDialect:
    """aiosqlite: ``?`` placeholders as written, ``IN`` lists, the cursor's row count."""

    #: SQLite reports every constraint violation as an IntegrityError.
    unique_violation: type[Exception] = sqlite3.IntegrityError

    def sql(self, text: str) -> str:
        """``text`` itself: SQLite takes ``?`` placeholders."""
        return text

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column IN (?, ...)``, one parameter per value."""
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)

    async def fetch(
        self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any]
    ) -> Sequence[Row]:
        """Every row the statement selects."""
        return list(await conn.execute_fetchall(sql, tuple(params)))

    async def execute(self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; how many rows it changed."""
        async with conn.execute(sql, tuple(params)) as cursor:
            return cursor.rowcount
