"""The PostgreSQL adapter's side of the SQL shared with SQLite (:mod:`sql_dialect`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from metering.store.codec import Row
from metering.store.postgres_schema import Conn

__all__ = ["PostgresDialect"]


class PostgresDialect:
    """asyncpg: ``$n`` placeholders, ``= ANY(array)`` lists, the command tag's row count."""

    #: Only a unique constraint violated (other constraints are not a Conflict).
    unique_violation: type[Exception] = asyncpg.UniqueViolationError

    def sql(self, text: str) -> str:
        """``text`` with its ``?`` placeholders numbered ``$1``, ``$2``... in order."""
        first, *rest = text.split("?")
        return first + "".join(f"${n}{part}" for n, part in enumerate(rest, start=1))

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """``column = ANY(?::text[])``: one array parameter, one statement text for any count."""
        return f"{column} = ANY(?::text[])", [list(values)]

    async def fetch(self, conn: Conn, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """Every row the statement selects."""
        rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
        return rows

    async def execute(self, conn: Conn, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; how many rows it changed (the last word of its command tag)."""
        status: str = await conn.execute(sql, *params)
        return int(status.rsplit(" ", 1)[-1])
