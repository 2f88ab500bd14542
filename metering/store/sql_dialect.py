"""What the SQL written once for both SQL adapters needs from each driver.

Statements shared by the SQLite and PostgreSQL adapters (record tables, event reads) are
written with ``?`` placeholders; :meth:`SqlDialect.sql` turns them into the driver's style.
Everything else that differs between aiosqlite and asyncpg for those statements is here too:
an "is one of" clause, fetching rows, a statement's row count and the unique-violation error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from metering.store.codec import Row

__all__ = ["SqlDialect"]

C_contra = TypeVar("C_contra", contravariant=True)


class SqlDialect(Protocol[C_contra]):
    """One driver's side of the shared SQL, for connections of type ``C_contra``."""

    #: The driver's error for a unique constraint violated by a statement.
    unique_violation: type[Exception]

    def sql(self, text: str) -> str:
        """``text`` with each ``?`` placeholder in the driver's style."""

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """A clause (``?`` placeholders) that ``column`` is one of ``values``, and its params."""

    async def fetch(self, conn: C_contra, sql: str, params: Sequence[Any]) -> Sequence[Row]:
        """Every row the statement selects."""

    async def execute(self, conn: C_contra, sql: str, params: Sequence[Any]) -> int:
        """Run a statement; how many rows it changed."""
