"""Record tables of the SQL adapters: a msgspec JSON ``body`` plus indexed columns.

One :class:`SqlRecordTable` per :class:`~metering.store.records.RecordKind`; the indexed
columns carry the record attributes of the same name, so the SQL is derived from the
declaration, and written once for both drivers through their :class:`SqlDialect`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from metering.errors import Conflict
from metering.models import ApiKey, BillableMetric, Customer, Plan, Subscription
from metering.ports import Page
from metering.store.codec import JsonCodec, to_micros
from metering.store.paging import page_offset
from metering.store.records import CUSTOMERS, KEYS, METRICS, PLANS, SUBSCRIPTIONS, RecordKind
from metering.store.sql_dialect import SqlDialect

__all__ = ["RecordTables", "SqlRecordTable"]

C = TypeVar("C")
R = TypeVar("R", BillableMetric, Plan, Customer, Subscription, ApiKey)


class SqlRecordTable(Generic[C, R]):
    """SQL for one record type over connections of type ``C``."""

    def __init__(self, record: RecordKind[R], codec: JsonCodec, dialect: SqlDialect[C]) -> None:
        self._kind: type[R] = record.kind
        self._not_found = record.not_found
        self._table = record.table
        self._columns = record.columns
        self._unique = record.unique
        self._codec = codec
        self._dialect = dialect
        names = ("id", *self._columns, "created_us", "body")
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
        self._upsert = dialect.sql(
            f"INSERT INTO {record.table} ({', '.join(names)}) "  # noqa: S608 - our own identifiers
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )

    def _params(self, record: R) -> tuple[Any, ...]:
        indexed: list[str] = [str(getattr(record, name)) for name in self._columns]
        return (record.id, *indexed, to_micros(record.created_at), self._codec.encode(record))

    async def put(self, conn: C, record: R) -> None:
        """Insert or replace by id; a clash on the unique column raises Conflict."""
        try:
            await self._dialect.execute(conn, self._upsert, self._params(record))
        except self._dialect.unique_violation as exc:
            raise Conflict({self._unique or "id": ["value_already_exist"]}) from exc

    async def get(self, conn: C, where: dict[str, str], *, newest: bool = False) -> R:
        """The record matching every ``column = value`` of ``where`` (newest, or first)."""
        clause = " AND ".join(f"{column} = ?" for column in where)
        order = "DESC" if newest else "ASC"
        sql = (
            f"SELECT body FROM {self._table} WHERE {clause} "  # noqa: S608
            f"ORDER BY created_us {order}, seq {order} LIMIT 1"
        )
        rows = await self._dialect.fetch(conn, self._dialect.sql(sql), tuple(where.values()))
        if not rows:
            raise self._not_found()
        return self._codec.decode(rows[0][0], self._kind)

    async def page(
        self,
        conn: C,
        *,
        where: dict[str, str] | None = None,
        any_of: tuple[str, Sequence[str]] | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[R]:
        """One page in creation order, filtered by equalities and one optional IN list."""
        offset = page_offset(page, per_page)
        clauses = [f"{column} = ?" for column in where or {}]
        params: list[Any] = list((where or {}).values())
        if any_of is not None and any_of[1]:
            clause, values = self._dialect.one_of(any_of[0], [str(v) for v in any_of[1]])
            clauses.append(clause)
            params.extend(values)
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # The window count rides along with the page; a page past the end needs its own count.
        sql = (
            f"SELECT body, COUNT(*) OVER () FROM {self._table} {condition} "  # noqa: S608
            "ORDER BY created_us, seq LIMIT ? OFFSET ?"
        )
        rows = await self._dialect.fetch(conn, self._dialect.sql(sql), (*params, per_page, offset))
        if rows:
            total = int(rows[0][1])
        else:
            count_sql = f"SELECT COUNT(*) FROM {self._table} {condition}"  # noqa: S608
            counted = await self._dialect.fetch(conn, self._dialect.sql(count_sql), params)
            total = int(counted[0][0])
        items = tuple(self._codec.decode(row[0], self._kind) for row in rows)
        return Page(items=items, page=page, per_page=per_page, total_count=total)

    async def all(self, conn: C, *, newest_first: bool = False) -> list[R]:
        """Every record in creation order (or the reverse)."""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT body FROM {self._table} ORDER BY created_us {order}, seq {order}"  # noqa: S608
        rows = await self._dialect.fetch(conn, sql, ())
        return [self._codec.decode(row[0], self._kind) for row in rows]

    async def delete(self, conn: C, column: str, value: str) -> None:
        """Delete the record whose ``column`` equals ``value``; NotFound if there is none."""
        sql = f"DELETE FROM {self._table} WHERE {column} = ?"  # noqa: S608
        if await self._dialect.execute(conn, self._dialect.sql(sql), (value,)) == 0:
            raise self._not_found()


class RecordTables(Generic[C]):
    """An SQL adapter's five record tables."""

    def __init__(self, codec: JsonCodec, dialect: SqlDialect[C]) -> None:
        self.metrics = SqlRecordTable(METRICS, codec, dialect)
        self.plans = SqlRecordTable(PLANS, codec, dialect)
        self.customers = SqlRecordTable(CUSTOMERS, codec, dialect)
        self.subscriptions = SqlRecordTable(SUBSCRIPTIONS, codec, dialect)
        self.keys = SqlRecordTable(KEYS, codec, dialect)
