"""The storage protocol every adapter in :mod:`metering.store` implements.

One contract test suite (``tests/metering/store/``) runs against every adapter. Adapters enforce
idempotency with a storage constraint on (``external_subscription_id``, ``transaction_id``) and
never read-then-write to decide it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

import msgspec

from metering.models import (
    ApiKey,
    BillableMetric,
    Customer,
    Event,
    Plan,
    Subscription,
)

__all__ = [
    "AggregateQuery",
    "BatchResult",
    "DuplicatePolicy",
    "EventBatch",
    "GroupAggregate",
    "Page",
    "Store",
    "Window",
    "WindowAggregate",
]

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a listing; ``page`` is 1-based, ``total_count`` counts every page's items."""

    items: tuple[T, ...]
    page: int
    per_page: int
    total_count: int

    @property
    def total_pages(self) -> int:
        """How many pages the listing has (at least 1, as Lago reports for empty lists)."""
        return max(1, -(-self.total_count // self.per_page))


class DuplicatePolicy(enum.Enum):
    """What a batch does when an event's identity is already stored (or repeated in the batch)."""

    #: Lago API semantics: the whole batch is refused and nothing of it is stored.
    REJECT = "reject"
    #: The gateway's own re-emission: duplicates are skipped, the rest is stored.
    SKIP = "skip"


class EventBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Events that are stored all together (or, with REJECT, not at all)."""

    events: tuple[Event, ...]
    policy: DuplicatePolicy = DuplicatePolicy.REJECT
    #: The id of the request that produced the batch, named when the batch cannot be stored.
    origin: str | None = None


class BatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of one batch: indexes (into the batch) of the duplicates found.

    With REJECT and any duplicate, ``stored`` is False and nothing of the batch was written.
    """

    stored: bool
    inserted: int
    duplicates: tuple[int, ...] = ()


class AggregateQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which events to fold: one subscription, one metric code, a closed time range.

    ``from_ts`` is inclusive (``None`` = since the beginning, for recurring metrics) and
    ``to_ts`` inclusive. Results are grouped by the text values of ``group_keys``.
    """

    external_subscription_id: str
    code: str
    from_ts: datetime | None
    to_ts: datetime
    field_name: str | None
    group_keys: tuple[str, ...] = ()


class GroupAggregate(msgspec.Struct, frozen=True, kw_only=True):
    """Sum, count and max of one group of events.

    ``values`` holds each group key's property text (``None`` when the event lacks it).
    ``events`` counts every event of the group; ``numeric_events``, ``total`` and ``maximum``
    only consider events whose field passes Lago's numeric rule (:mod:`metering.values`).
    """

    values: tuple[str | None, ...]
    events: int
    numeric_events: int
    total: Decimal
    maximum: Decimal | None


class Window(enum.Enum):
    """The length of one step of a usage time series: whole UTC hours or whole UTC days."""

    HOUR = "hour"
    DAY = "day"


class WindowAggregate(msgspec.Struct, frozen=True, kw_only=True):
    """The groups of one window of a series; ``start`` is the window's UTC start (aligned)."""

    start: datetime
    groups: tuple[GroupAggregate, ...]


class Store(Protocol):
    """Async persistence of the metering domain. Methods raise ``metering.errors`` categories."""

    async def open(self) -> None:
        """Connect and migrate the schema to the current version."""

    async def close(self) -> None:
        """Release every resource; the store is unusable afterwards."""

    async def ping(self) -> bool:
        """Whether the store answers a trivial query (readiness)."""

    def broken(self) -> str | None:
        """Why the store cannot be used until an operator acts (its file damaged, deleted or
        replaced), else None. Synchronous and cheap: it is asked before every proxied request
        is forwarded. Once set it stays set for the life of the store object."""

    # -- billable metrics ------------------------------------------------------------------
    async def put_metric(self, metric: BillableMetric) -> None:
        """Insert or replace (by ``id``) a metric; its ``code`` is unique (Conflict)."""

    async def get_metric(self, *, id: str | None = None, code: str | None = None) -> BillableMetric:
        """The metric by id or code, else NotFound."""

    async def list_metrics(self, *, page: int = 1, per_page: int = 100) -> Page[BillableMetric]:
        """Metrics ordered by creation."""

    async def delete_metric(self, id: str) -> None:
        """Remove a metric (NotFound if absent)."""

    # -- plans (with their charges) --------------------------------------------------------
    async def put_plan(self, plan: Plan) -> None:
        """Insert or replace (by ``id``) a plan with its charges; ``code`` is unique."""

    async def get_plan(self, *, id: str | None = None, code: str | None = None) -> Plan:
        """The plan by id or code, else NotFound."""

    async def list_plans(self, *, page: int = 1, per_page: int = 100) -> Page[Plan]:
        """Plans ordered by creation."""

    async def delete_plan(self, id: str) -> None:
        """Remove a plan (NotFound if absent)."""

    # -- customers --------------------------------------------------------------------------
    async def put_customer(self, customer: Customer) -> None:
        """Insert or replace (by ``id``) a customer; ``external_id`` is unique."""

    async def get_customer(self, *, external_id: str) -> Customer:
        """The customer, else NotFound."""

    async def list_customers(self, *, page: int = 1, per_page: int = 100) -> Page[Customer]:
        """Customers ordered by creation."""

    async def delete_customer(self, external_id: str) -> None:
        """Remove a customer (NotFound if absent)."""

    # -- subscriptions ----------------------------------------------------------------------
    async def put_subscription(self, subscription: Subscription) -> None:
        """Insert or replace (by ``id``) a subscription."""

    async def get_subscription(self, *, external_id: str) -> Subscription:
        """The newest subscription with this external id, else NotFound."""

    async def list_subscriptions(
        self,
        *,
        external_customer_id: str | None = None,
        plan_code: str | None = None,
        statuses: Sequence[str] = (),
        page: int = 1,
        per_page: int = 100,
    ) -> Page[Subscription]:
        """Subscriptions ordered by creation, optionally filtered."""

    # -- events -----------------------------------------------------------------------------
    async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
        """Store several batches in ONE transaction (group commit), each batch atomically.

        Returns one result per batch, in order. When this returns, every stored event is
        durable. Raises StoreUnavailable if the store cannot write at all, RecordRefused if a
        batch holds a value the store cannot hold; either way nothing of the group is written.
        """

    async def get_event(
        self, *, transaction_id: str, external_subscription_id: str | None = None
    ) -> Event:
        """The event by transaction id (and subscription), else NotFound."""

    async def aggregate(self, query: AggregateQuery) -> list[GroupAggregate]:
        """Sum/count/max of the matching events per group of ``query.group_keys`` values."""

    async def aggregate_series(
        self, query: AggregateQuery, window: Window
    ) -> list[WindowAggregate]:
        """:meth:`aggregate` per UTC ``window`` (hour or day) of the query's range.

        One entry per window that holds matching events, ordered by ``start``; windows
        without events are left out. Windows are aligned to UTC, not to ``from_ts``: the
        first and last window only count their part inside [``from_ts``, ``to_ts``]. Adapters
        with rollups read whole windows from them and only the partial edges from raw events.
        """

    async def list_events(
        self,
        *,
        external_subscription_id: str,
        code: str,
        from_ts: datetime | None,
        to_ts: datetime,
    ) -> list[Event]:
        """The matching events in (timestamp, created_at) order, for per-event aggregations."""

    # -- api keys ---------------------------------------------------------------------------
    async def put_key(self, key: ApiKey) -> None:
        """Insert or replace (by ``id``) a key; ``key_hash`` is unique."""

    async def get_key(self, *, id: str | None = None, key_hash: str | None = None) -> ApiKey:
        """The key by id or hash, else NotFound."""

    async def list_keys(self) -> list[ApiKey]:
        """Every key, newest first."""
