"""The five record types every store keeps, declared once for all adapters.

A :class:`RecordKind` names what differs between them: the SQL adapters' table and indexed
columns, the attribute that must be unique (reported as a Conflict), and the error a missing
record raises. The memory store uses the same declarations, so its conflicts and not-found
errors cannot drift from the SQL adapters'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from metering.errors import NotFound
from metering.models import ApiKey, BillableMetric, Customer, Plan, Subscription

__all__ = ["CUSTOMERS", "KEYS", "METRICS", "PLANS", "SUBSCRIPTIONS", "RecordKind"]

R = TypeVar("R", BillableMetric, Plan, Customer, Subscription, ApiKey)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordKind(Generic[R]):
    """One record type: its table, indexed columns, unique column and not-found error.

    ``columns`` are the record's attributes stored beside its JSON body (looked up, filtered on
    or unique) under the same names; ``unique`` is the one whose clash is a Conflict.
    """

    table: str
    kind: type[R]
    columns: tuple[str, ...]
    unique: str | None
    not_found: Callable[[], NotFound]


METRICS = RecordKind(
    table="metrics",
    kind=BillableMetric,
    columns=("code",),
    unique="code",
    not_found=lambda: NotFound("billable_metric", "billable_metrics_not_found"),
)
PLANS = RecordKind(
    table="plans",
    kind=Plan,
    columns=("code",),
    unique="code",
    not_found=lambda: NotFound("plan"),
)
CUSTOMERS = RecordKind(
    table="customers",
    kind=Customer,
    columns=("external_id",),
    unique="external_id",
    not_found=lambda: NotFound("customer"),
)
SUBSCRIPTIONS = RecordKind(
    table="subscriptions",
    kind=Subscription,
    columns=("external_id", "external_customer_id", "plan_code", "status"),
    unique=None,
    not_found=lambda: NotFound("subscription"),
)
KEYS = RecordKind(
    table="api_keys",
    kind=ApiKey,
    columns=("key_hash",),
    unique="key_hash",
    not_found=lambda: NotFound("api_key"),
)
