"""The Store methods that are the same for both SQL adapters: records and plain event reads.

Plans, customers, subscriptions, API keys and metric reads are each one call on the adapter's
record table (:mod:`sql_records`) inside its read or write plumbing, and event look-ups and
listings one call to :mod:`sql_reads`. The adapters differ only in their connection type,
their dialect and how ``_read``/``_write`` obtain a connection, which is what
:class:`SqlFacade` leaves to them. Metric writes, event writes and aggregates stay in each
adapter: they keep rollups their own way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from metering.models import ApiKey, BillableMetric, Customer, Event, Plan, Subscription
from metering.ports import Page
from metering.store.codec import JsonCodec
from metering.store.sql_dialect import SqlDialect
from metering.store.sql_reads import EventReads
from metering.store.sql_records import RecordTables

__all__ = ["SqlFacade", "where"]

C = TypeVar("C")
T = TypeVar("T")


def where(*, empty: bool = False, **given: str | None) -> dict[str, str]:
    """The given lookups as ``column -> value``; at least one unless ``empty`` is allowed."""
    found = {column: value for column, value in given.items() if value is not None}
    if not found and not empty:
        raise ValueError(f"give one of: {', '.join(given)}")
    return found


class SqlFacade(Generic[C]):
    """Store methods for records and event reads, over an adapter's tables, dialect and
    ``_read``/``_write``."""

    def __init__(self, dialect: SqlDialect[C]) -> None:
        self._codec = JsonCodec()
        self._tables = RecordTables(self._codec, dialect)
        self._events = EventReads(dialect, self._codec)

    @abstractmethod
    async def _read(self, op: Callable[[C], Awaitable[T]]) -> T:
        """Run ``op`` on a connection for reading."""

    @abstractmethod
    async def _write(self, op: Callable[[C], Awaitable[T]]) -> T:
        """Run ``op`` in one write transaction."""

    # -- billable metrics (reads; writes rebuild rollups in each adapter) --------------------
    async def get_metric(self, *, id: str | None = None, code: str | None = None) -> BillableMetric:
        """The metric by id or code (both must match when both are given)."""
        lookup = where(id=id, code=code)
        return await self._read(lambda conn: self._tables.metrics.get(conn, lookup))

    async def list_metrics(self, *, page: int = 1, per_page: int = 100) -> Page[BillableMetric]:
        """Metrics in creation order."""
        return await self._read(
            lambda c: self._tables.metrics.page(c, page=page, per_page=per_page)
        )

    # -- plans -------------------------------------------------------------------------------
    async def put_plan(self, plan: Plan) -> None:
        """Insert or replace a plan (with its charges); its code is unique."""
        await self._write(lambda conn: self._tables.plans.put(conn, plan))

    async def get_plan(self, *, id: str | None = None, code: str | None = None) -> Plan:
        """The plan by id or code."""
        lookup = where(id=id, code=code)
        return await self._read(lambda conn: self._tables.plans.get(conn, lookup))

    async def list_plans(self, *, page: int = 1, per_page: int = 100) -> Page[Plan]:
        """Plans in creation order."""
        return await self._read(lambda c: self._tables.plans.page(c, page=page, per_page=per_page))

    async def delete_plan(self, id: str) -> None:
        """Remove a plan."""
        await self._write(lambda conn: self._tables.plans.delete(conn, "id", id))

    # -- customers ---------------------------------------------------------------------------
    async def put_customer(self, customer: Customer) -> None:
        """Insert or replace a customer; its external id is unique."""
        await self._write(lambda conn: self._tables.customers.put(conn, customer))

    async def get_customer(self, *, external_id: str) -> Customer:
        """The customer by external id."""
        lookup = {"external_id": external_id}
        return await self._read(lambda conn: self._tables.customers.get(conn, lookup))

    async def list_customers(self, *, page: int = 1, per_page: int = 100) -> Page[Customer]:
        """Customers in creation order."""
        return await self._read(
            lambda c: self._tables.customers.page(c, page=page, per_page=per_page)
        )

    async def delete_customer(self, external_id: str) -> None:
        """Remove a customer by external id."""
        await self._write(
            lambda conn: self._tables.customers.delete(conn, "external_id", external_id)
        )

    # -- subscriptions -----------------------------------------------------------------------
    async def put_subscription(self, subscription: Subscription) -> None:
        """Insert or replace a subscription."""
        await self._write(lambda conn: self._tables.subscriptions.put(conn, subscription))

    async def get_subscription(self, *, external_id: str) -> Subscription:
        """The newest subscription with this external id."""
        lookup = {"external_id": external_id}
        return await self._read(
            lambda conn: self._tables.subscriptions.get(conn, lookup, newest=True)
        )

    async def list_subscriptions(
        self,
        *,
        external_customer_id: str | None = None,
        plan_code: str | None = None,
        statuses: Sequence[str] = (),
        page: int = 1,
        per_page: int = 100,
    ) -> Page[Subscription]:
        """Subscriptions in creation order, optionally filtered."""
        lookup = where(external_customer_id=external_customer_id, plan_code=plan_code, empty=True)
        return await self._read(
            lambda conn: self._tables.subscriptions.page(
                conn, where=lookup, any_of=("status", statuses), page=page, per_page=per_page
            )
        )

    # -- api keys ----------------------------------------------------------------------------
    async def put_key(self, key: ApiKey) -> None:
        """Insert or replace a key; its hash is unique."""
        await self._write(lambda conn: self._tables.keys.put(conn, key))

    async def get_key(self, *, id: str | None = None, key_hash: str | None = None) -> ApiKey:
        """The key by id or hash."""
        lookup = where(id=id, key_hash=key_hash)
        return await self._read(lambda conn: self._tables.keys.get(conn, lookup))

    async def list_keys(self) -> list[ApiKey]:
        """Every key, newest first."""
        return await self._read(lambda conn: self._tables.keys.all(conn, newest_first=True))

    # -- event reads -------------------------------------------------------------------------
    async def get_event(
        self, *, transaction_id: str, external_subscription_id: str | None = None
    ) -> Event:
        """The event by transaction id (the first stored one when no subscription is given)."""
        return await self._read(
            lambda conn: self._events.get(conn, transaction_id, external_subscription_id)
        )

    async def list_events(
        self,
        *,
        external_subscription_id: str,
        code: str,
        from_ts: datetime | None,
        to_ts: datetime,
    ) -> list[Event]:
        """The matching events in (timestamp, created_at) order."""
        sub = external_subscription_id
        return await self._read(lambda conn: self._events.list(conn, sub, code, from_ts, to_ts))
