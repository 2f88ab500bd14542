"""Record tables of the SQLite adapter: a msgspec JSON ``body`` plus indexed columns.

One :class:`RecordTable` per record type; the indexed columns carry the record attributes of
the same name, so the SQL is derived from one declaration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import aiosqlite

from metering.errors import Conflict, NotFound
from metering.models import ApiKey, BillableMetric, Customer, Plan, Subscription
from metering.ports import Page
from metering.store.codec import JsonCodec, to_micros
from metering.store.paging import page_offset

__all__ = ["RecordTable", "RecordTables"]

R = TypeVar("R", BillableMetric, Plan, Customer, Subscription, ApiKey)


class RecordTable(Generic[R]):
    """SQL for one record type.

    ``columns`` are the record's attributes stored beside the body (looked up, filtered on or
    unique); ``unique`` names the one whose clash is reported as a Conflict.
    """

    def __init__(
        self,
        *,
        table: str,
        kind: type[R],
        columns: Sequence[str],
        unique: str | None,
        not_found: Callable[[], NotFound],
        codec: JsonCodec,
    ) -> None:
        self.kind: type[R] = kind
        self.not_found = not_found
        self._table = table
        self._columns: tuple[str, ...] = tuple(columns)
        self._unique: str | None = unique
        self._codec: JsonCodec = codec
        names = ("id", *self._columns, "created_us", "body")
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
        self._upsert = (
            f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 - our own identifiers
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )

    def _params(self, record: R) -> tuple[Any, ...]:
        indexed: list[str] = [str(getattr(record, name)) for name in self._columns]
        return (record.id, *indexed, to_micros(record.created_at), self._codec.encode(record))

    async def put(self, conn: aiosqlite.Connection, record: R) -> None:
        """Insert or replace by id; a clash on the unique column raises Conflict."""
        try:
            await conn.execute(self._upsert, self._params(record))
        except sqlite3.IntegrityError as exc:
            field = self._unique or "id"
            raise Conflict({field: ["value_already_exist"]}) from exc

    async def get(
        self, conn: aiosqlite.Connection, where: dict[str, str], *, newest: bool = False
    ) -> R:
        """The record matching every ``column = value`` of ``where`` (newest, or first)."""
        clause = " AND ".join(f"{column} = ?" for column in where)
        order = "DESC" if newest else "ASC"
        sql = (
            f"SELECT body FROM {self._table} WHERE {clause} "  # noqa: S608
            f"ORDER BY created_us {order}, seq {order} LIMIT 1"
        )
        rows = list(await conn.execute_fetchall(sql, tuple(where.values())))
        if not rows:
            raise self.not_found()
        return self._codec.decode(rows[0][0], self.kind)

    async def page(
        self,
        conn: aiosqlite.Connection,
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
            clauses.append(f"{any_of[0]} IN ({', '.join('?' for _ in any_of[1])})")
            params.extend(str(value) for value in any_of[1])
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # The window count rides along with the page; a page past the end needs its own count.
        sql = (
            f"SELECT body, COUNT(*) OVER () FROM {self._table} {condition} "  # noqa: S608
            "ORDER BY created_us, seq LIMIT ? OFFSET ?"
        )
        rows = list(await conn.execute_fetchall(sql, (*params, per_page, offset)))
        if rows:
            total = int(rows[0][1])
        else:
            count_sql = f"SELECT COUNT(*) FROM {self._table} {condition}"  # noqa: S608
            total = int(next(iter(await conn.execute_fetchall(count_sql, tuple(params))))[0])
        items = tuple(self._codec.decode(row[0], self.kind) for row in rows)
        return Page(items=items, page=page, per_page=per_page, total_count=total)

    async def all(self, conn: aiosqlite.Connection, *, newest_first: bool = False) -> list[R]:
        """Every record in creation order (or the reverse)."""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT body FROM {self._table} ORDER BY created_us {order}, seq {order}"  # noqa: S608
        rows = await conn.execute_fetchall(sql)
        return [self._codec.decode(row[0], self.kind) for row in rows]

    async def delete(self, conn: aiosqlite.Connection, column: str, value: str) -> None:
        """Delete the record whose ``column`` equals ``value``; NotFound if there is none."""
        async with conn.execute(
            f"DELETE FROM {self._table} WHERE {column} = ?",  # noqa: S608
            (value,),
        ) as cursor:
            deleted = cursor.rowcount
        if deleted == 0:
            raise self.not_found()


class RecordTables:
    """The adapter's five record tables, declared once."""

    def __init__(self, codec: JsonCodec) -> None:
        self.metrics = RecordTable(
            table="metrics",
            kind=BillableMetric,
            columns=("code",),
            unique="code",
            not_found=lambda: NotFound("billable_metric", "billable_metrics_not_found"),
            codec=codec,
        )
        self.plans = RecordTable(
            table="plans",
            kind=Plan,
            columns=("code",),
            unique="code",
            not_found=lambda: NotFound("plan"),
            codec=codec,
        )
        self.customers = RecordTable(
            table="customers",
            kind=Customer,
            columns=("external_id",),
            unique="external_id",
            not_found=lambda: NotFound("customer"),
            codec=codec,
        )
        self.subscriptions = RecordTable(
            table="subscriptions",
            kind=Subscription,
            columns=("external_id", "external_customer_id", "plan_code", "status"),
            unique=None,
            not_found=lambda: NotFound("subscription"),
            codec=codec,
        )
        self.keys = RecordTable(
            table="api_keys",
            kind=ApiKey,
            columns=("key_hash",),
            unique="key_hash",
            not_found=lambda: NotFound("api_key"),
            codec=codec,
        )
