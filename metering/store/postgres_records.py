"""Record tables of the PostgreSQL adapter: a msgspec JSON ``body`` plus indexed columns.

The same declaration as the SQLite adapter's (``sqlite_records``), with asyncpg's ``$n``
parameters; a unique violation on the declared column is reported as a Conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg

from metering.errors import Conflict, NotFound
from metering.models import ApiKey, BillableMetric, Customer, Plan, Subscription
from metering.ports import Page
from metering.store.codec import JsonCodec, to_micros
from metering.store.paging import page_offset
from metering.store.postgres_schema import Conn

__all__ = ["PgRecordTable", "PgRecordTables"]

R = TypeVar("R", BillableMetric, Plan, Customer, Subscription, ApiKey)


def _placeholders(start: int, count: int) -> str:
    return ", ".join(f"${n}" for n in range(start, start + count))


class PgRecordTable(Generic[R]):
    """SQL for one record type (see ``sqlite_records.RecordTable``)."""

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
        self._unique = unique
        self._codec = codec
        names = ("id", *self._columns, "created_us", "body")
        updates = ", ".join(f"{name} = excluded.{name}" for name in names[1:])
        self._upsert = (
            f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 - our own identifiers
            f"VALUES ({_placeholders(1, len(names))}) ON CONFLICT (id) DO UPDATE SET {updates}"
        )

    def _params(self, record: R) -> tuple[Any, ...]:
        indexed: list[str] = [str(getattr(record, name)) for name in self._columns]
        return (record.id, *indexed, to_micros(record.created_at), self._codec.encode(record))

    async def put(self, conn: Conn, record: R) -> None:
        """Insert or replace by id; a clash on the unique column raises Conflict."""
        try:
            await conn.execute(self._upsert, *self._params(record))
        except asyncpg.UniqueViolationError as exc:
            raise Conflict({self._unique or "id": ["value_already_exist"]}) from exc

    async def get(self, conn: Conn, where: dict[str, str], *, newest: bool = False) -> R:
        """The record matching every ``column = value`` of ``where`` (newest, or first)."""
        clause = " AND ".join(f"{column} = ${n}" for n, column in enumerate(where, start=1))
        order = "DESC" if newest else "ASC"
        sql = (
            f"SELECT body FROM {self._table} WHERE {clause} "  # noqa: S608
            f"ORDER BY created_us {order}, seq {order} LIMIT 1"
        )
        body = await conn.fetchval(sql, *where.values())
        if body is None:
            raise self.not_found()
        return self._codec.decode(body, self.kind)

    async def page(
        self,
        conn: Conn,
        *,
        where: dict[str, str] | None = None,
        any_of: tuple[str, Sequence[str]] | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> Page[R]:
        """One page in creation order, filtered by equalities and one optional IN list."""
        offset = page_offset(page, per_page)
        params: list[Any] = list((where or {}).values())
        clauses = [f"{column} = ${n}" for n, column in enumerate(where or {}, start=1)]
        if any_of is not None and any_of[1]:
            params.append([str(value) for value in any_of[1]])
            clauses.append(f"{any_of[0]} = ANY(${len(params)}::text[])")
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        n = len(params)
        # The window count rides along with the page; a page past the end needs its own count.
        sql = (
            f"SELECT body, COUNT(*) OVER () FROM {self._table} {condition} "  # noqa: S608
            f"ORDER BY created_us, seq LIMIT ${n + 1} OFFSET ${n + 2}"
        )
        rows = await conn.fetch(sql, *params, per_page, offset)
        if rows:
            total = int(rows[0][1])
        else:
            count_sql = f"SELECT COUNT(*) FROM {self._table} {condition}"  # noqa: S608
            total = int(await conn.fetchval(count_sql, *params))
        items = tuple(self._codec.decode(row[0], self.kind) for row in rows)
        return Page(items=items, page=page, per_page=per_page, total_count=total)

    async def all(self, conn: Conn, *, newest_first: bool = False) -> list[R]:
        """Every record in creation order (or the reverse)."""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT body FROM {self._table} ORDER BY created_us {order}, seq {order}"  # noqa: S608
        return [self._codec.decode(row[0], self.kind) for row in await conn.fetch(sql)]

    async def delete(self, conn: Conn, column: str, value: str) -> None:
        """Delete the record whose ``column`` equals ``value``; NotFound if there is none."""
        status = await conn.execute(
            f"DELETE FROM {self._table} WHERE {column} = $1",  # noqa: S608
            value,
        )
        if status == "DELETE 0":
            raise self.not_found()


class PgRecordTables:
    """The adapter's five record tables, declared once."""

    def __init__(self, codec: JsonCodec) -> None:
        self.metrics = PgRecordTable(
            table="metrics",
            kind=BillableMetric,
            columns=("code",),
            unique="code",
            not_found=lambda: NotFound("billable_metric", "billable_metrics_not_found"),
            codec=codec,
        )
        self.plans = PgRecordTable(
            table="plans",
            kind=Plan,
            columns=("code",),
            unique="code",
            not_found=lambda: NotFound("plan"),
            codec=codec,
        )
        self.customers = PgRecordTable(
            table="customers",
            kind=Customer,
            columns=("external_id",),
            unique="external_id",
            not_found=lambda: NotFound("customer"),
            codec=codec,
        )
        self.subscriptions = PgRecordTable(
            table="subscriptions",
            kind=Subscription,
            columns=("external_id", "external_customer_id", "plan_code", "status"),
            unique=None,
            not_found=lambda: NotFound("subscription"),
            codec=codec,
        )
        self.keys = PgRecordTable(
            table="api_keys",
            kind=ApiKey,
            columns=("key_hash",),
            unique="key_hash",
            not_found=lambda: NotFound("api_key"),
            codec=codec,
        )
