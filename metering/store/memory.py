"""In-memory :class:`~metering.ports.Store`: the contract's reference and the tests' fake.

Plain dicts, no I/O. It answers every query by scanning raw events, which is what the SQLite
adapter's rollups must reproduce exactly. Not thread-safe; one event loop at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Generic, TypeVar

from metering.errors import Conflict, NotFound
from metering.models import ApiKey, BillableMetric, Customer, Event, Plan, Subscription
from metering.ports import (
    AggregateQuery,
    BatchResult,
    DuplicatePolicy,
    EventBatch,
    GroupAggregate,
    Page,
    Window,
    WindowAggregate,
)
from metering.store.codec import to_micros
from metering.store.paging import page_offset
from metering.store.records import CUSTOMERS, KEYS, METRICS, PLANS, SUBSCRIPTIONS, RecordKind
from metering.store.scan import scan_groups, scan_series
from metering.store.series import window_micros

__all__ = ["MemoryStore"]

R = TypeVar("R", BillableMetric, Plan, Customer, Subscription, ApiKey)


class _Table(Generic[R]):
    """Records by id, with an optional unique attribute and a stable creation order."""

    def __init__(self, record: RecordKind[R]) -> None:
        self._unique = record.unique
        self._not_found = record.not_found
        self._rows: dict[str, tuple[int, R]] = {}
        self._index: dict[object, str] = {}
        self._next_seq = 0

    def put(self, record: R) -> None:
        previous = self._rows.get(record.id)
        if self._unique is not None:
            value = getattr(record, self._unique)
            owner = self._index.get(value)
            if owner is not None and owner != record.id:
                raise Conflict({self._unique: ["value_already_exist"]})
            if previous is not None:
                del self._index[getattr(previous[1], self._unique)]
            self._index[value] = record.id
        if previous is None:
            self._next_seq += 1
            self._rows[record.id] = (self._next_seq, record)
        else:
            # A replacement keeps its place, as an SQL upsert keeps its rowid.
            self._rows[record.id] = (previous[0], record)

    def by_id(self, record_id: str) -> R:
        row = self._rows.get(record_id)
        if row is None:
            raise self._not_found()
        return row[1]

    def by_unique(self, value: object) -> R:
        record_id = self._index.get(value)
        if record_id is None:
            raise self._not_found()
        return self._rows[record_id][1]

    def pick(self, record_id: str | None, unique: object | None) -> R:
        """By id, by unique value, or by both (which must then designate the same record)."""
        if record_id is None:
            if unique is None:
                raise ValueError("give an id or a code")
            return self.by_unique(unique)
        record = self.by_id(record_id)
        if unique is not None and (self._unique is None or getattr(record, self._unique) != unique):
            raise self._not_found()
        return record

    def ordered(self, *, newest_first: bool = False) -> list[R]:
        rows = sorted(self._rows.values(), key=lambda row: (to_micros(row[1].created_at), row[0]))
        if newest_first:
            rows.reverse()
        return [record for _, record in rows]

    def delete(self, record_id: str) -> R:
        row = self._rows.pop(record_id, None)
        if row is None:
            raise self._not_found()
        if self._unique is not None:
            del self._index[getattr(row[1], self._unique)]
        return row[1]


def _page(items: Sequence[R], page: int, per_page: int) -> Page[R]:
    start = page_offset(page, per_page)
    return Page(
        items=tuple(items[start : start + per_page]),
        page=page,
        per_page=per_page,
        total_count=len(items),
    )


class _StoredEvent:
    __slots__ = ("created_us", "event", "seq", "ts")

    def __init__(self, seq: int, event: Event) -> None:
        self.seq = seq
        self.event = event
        self.ts = to_micros(event.timestamp)
        self.created_us = to_micros(event.created_at)


class MemoryStore:
    """:class:`~metering.ports.Store` over plain dicts (see the module docstring)."""

    def __init__(self) -> None:
        self._open = False
        self._metrics = _Table(METRICS)
        self._plans = _Table(PLANS)
        self._customers = _Table(CUSTOMERS)
        self._subscriptions = _Table(SUBSCRIPTIONS)
        self._keys = _Table(KEYS)
        self._events: dict[tuple[str, str], _StoredEvent] = {}
        self._streams: dict[tuple[str, str], list[_StoredEvent]] = {}

    async def open(self) -> None:
        """Mark the store usable (nothing to connect)."""
        self._open = True

    async def close(self) -> None:
        """Mark the store closed; the data stays until the object is dropped."""
        self._open = False

    async def ping(self) -> bool:
        """Whether the store is open."""
        return self._open

    def broken(self) -> str | None:
        """Never: memory cannot be damaged from outside the process."""
        return None

    # -- billable metrics ------------------------------------------------------------------
    async def put_metric(self, metric: BillableMetric) -> None:
        """Insert or replace a metric by id; its code is unique."""
        self._metrics.put(metric)

    async def get_metric(self, *, id: str | None = None, code: str | None = None) -> BillableMetric:
        """The metric by id or code."""
        return self._metrics.pick(id, code)

    async def list_metrics(self, *, page: int = 1, per_page: int = 100) -> Page[BillableMetric]:
        """Metrics in creation order."""
        return _page(self._metrics.ordered(), page, per_page)

    async def delete_metric(self, id: str) -> None:
        """Remove a metric."""
        self._metrics.delete(id)

    # -- plans -------------------------------------------------------------------------------
    async def put_plan(self, plan: Plan) -> None:
        """Insert or replace a plan by id; its code is unique."""
        self._plans.put(plan)

    async def get_plan(self, *, id: str | None = None, code: str | None = None) -> Plan:
        """The plan by id or code."""
        return self._plans.pick(id, code)

    async def list_plans(self, *, page: int = 1, per_page: int = 100) -> Page[Plan]:
        """Plans in creation order."""
        return _page(self._plans.ordered(), page, per_page)

    async def delete_plan(self, id: str) -> None:
        """Remove a plan."""
        self._plans.delete(id)

    # -- customers ---------------------------------------------------------------------------
    async def put_customer(self, customer: Customer) -> None:
        """Insert or replace a customer by id; its external id is unique."""
        self._customers.put(customer)

    async def get_customer(self, *, external_id: str) -> Customer:
        """The customer by external id."""
        return self._customers.by_unique(external_id)

    async def list_customers(self, *, page: int = 1, per_page: int = 100) -> Page[Customer]:
        """Customers in creation order."""
        return _page(self._customers.ordered(), page, per_page)

    async def delete_customer(self, external_id: str) -> None:
        """Remove a customer by external id."""
        self._customers.delete(self._customers.by_unique(external_id).id)

    # -- subscriptions -----------------------------------------------------------------------
    async def put_subscription(self, subscription: Subscription) -> None:
        """Insert or replace a subscription by id."""
        self._subscriptions.put(subscription)

    async def get_subscription(self, *, external_id: str) -> Subscription:
        """The newest subscription with this external id."""
        for subscription in self._subscriptions.ordered(newest_first=True):
            if subscription.external_id == external_id:
                return subscription
        raise NotFound("subscription")

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
        wanted = {str(status) for status in statuses}
        items = [
            s
            for s in self._subscriptions.ordered()
            if (external_customer_id is None or s.external_customer_id == external_customer_id)
            and (plan_code is None or s.plan_code == plan_code)
            and (not wanted or str(s.status) in wanted)
        ]
        return _page(items, page, per_page)

    # -- events ------------------------------------------------------------------------------
    async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
        """Store each batch atomically; REJECT batches with a duplicate store nothing."""
        return [self._write_batch(batch) for batch in batches]

    def _write_batch(self, batch: EventBatch) -> BatchResult:
        seen: set[tuple[str, str]] = set()
        fresh: list[Event] = []
        duplicates: list[int] = []
        for index, event in enumerate(batch.events):
            key = (event.external_subscription_id, event.transaction_id)
            if key in seen or key in self._events:
                duplicates.append(index)
            else:
                seen.add(key)
                fresh.append(event)
        if duplicates and batch.policy is DuplicatePolicy.REJECT:
            return BatchResult(stored=False, inserted=0, duplicates=tuple(duplicates))
        for event in fresh:
            stored = _StoredEvent(len(self._events) + 1, event)
            self._events[(event.external_subscription_id, event.transaction_id)] = stored
            stream = (event.external_subscription_id, event.code)
            self._streams.setdefault(stream, []).append(stored)
        return BatchResult(stored=True, inserted=len(fresh), duplicates=tuple(duplicates))

    async def get_event(
        self, *, transaction_id: str, external_subscription_id: str | None = None
    ) -> Event:
        """The event by transaction id (the first stored one when no subscription is given)."""
        if external_subscription_id is not None:
            stored = self._events.get((external_subscription_id, transaction_id))
            if stored is None:
                raise NotFound("event")
            return stored.event
        matches = [s for s in self._events.values() if s.event.transaction_id == transaction_id]
        if not matches:
            raise NotFound("event")
        return min(matches, key=lambda s: s.seq).event

    def _scan(
        self, external_subscription_id: str, code: str, from_ts: datetime | None, to_ts: datetime
    ) -> list[_StoredEvent]:
        low = None if from_ts is None else to_micros(from_ts)
        high = to_micros(to_ts)
        return [
            s
            for s in self._streams.get((external_subscription_id, code), ())
            if (low is None or s.ts >= low) and s.ts <= high
        ]

    async def aggregate(self, query: AggregateQuery) -> list[GroupAggregate]:
        """Count, sum and max per group, by scanning the raw events."""
        found = self._scan(query.external_subscription_id, query.code, query.from_ts, query.to_ts)
        return scan_groups((stored.event.properties for stored in found), query)

    async def aggregate_series(
        self, query: AggregateQuery, window: Window
    ) -> list[WindowAggregate]:
        """Count, sum and max per UTC window and group, by scanning the raw events."""
        found = self._scan(query.external_subscription_id, query.code, query.from_ts, query.to_ts)
        events = ((stored.ts, stored.event.properties) for stored in found)
        return scan_series(events, query, window_micros(window))

    async def list_events(
        self,
        *,
        external_subscription_id: str,
        code: str,
        from_ts: datetime | None,
        to_ts: datetime,
    ) -> list[Event]:
        """The matching events in (timestamp, created_at) order."""
        found = self._scan(external_subscription_id, code, from_ts, to_ts)
        found.sort(key=lambda s: (s.ts, s.created_us, s.seq))
        return [s.event for s in found]

    # -- api keys ----------------------------------------------------------------------------
    async def put_key(self, key: ApiKey) -> None:
        """Insert or replace a key by id; its hash is unique."""
        self._keys.put(key)

    async def get_key(self, *, id: str | None = None, key_hash: str | None = None) -> ApiKey:
        """The key by id or hash."""
        return self._keys.pick(id, key_hash)

    async def list_keys(self) -> list[ApiKey]:
        """Every key, newest first."""
        return self._keys.ordered(newest_first=True)
