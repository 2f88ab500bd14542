"""Orchestration of the metering core: look records up, call the pure math, store results.

No HTTP and no clock: every method that needs "now" takes it as a parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from metering.errors import NotAllowed, NotFound
from metering.filters import BucketMatchers
from metering.models import (
    BillableMetric,
    BillingTime,
    Customer,
    Event,
    Subscription,
    SubscriptionStatus,
)
from metering.periods import subscription_period
from metering.ports import GroupAggregate, Store
from metering.usage import ChargeData, CustomerUsage, InputKind, customer_usage, usage_queries
from metering.values import property_text

__all__ = ["MeteringService"]


def _new_id() -> str:
    return str(uuid.uuid4())


class MeteringService:
    """Use cases over a :class:`~metering.ports.Store`."""

    def __init__(self, store: Store, *, premium: bool = False) -> None:
        self._store = store
        self._premium = premium
        # The plan's compiled buckets outlive a call: compiling them costs more than the read.
        self._matchers = BucketMatchers()

    @property
    def store(self) -> Store:
        """The store the service works on."""
        return self._store

    async def ensure_customer(self, external_id: str, *, now: datetime) -> Customer:
        """The customer with this external id, created (UTC, no currency) when missing."""
        try:
            return await self._store.get_customer(external_id=external_id)
        except NotFound:
            customer = Customer(
                id=_new_id(), external_id=external_id, created_at=now, updated_at=now
            )
            await self._store.put_customer(customer)
            return customer

    async def ensure_subscription(
        self, *, external_id: str, external_customer_id: str, plan_code: str, now: datetime
    ) -> Subscription:
        """The active subscription with this external id, else a new one starting ``now``."""
        try:
            existing = await self._store.get_subscription(external_id=external_id)
        except NotFound:
            existing = None
        if existing is not None and existing.status is SubscriptionStatus.ACTIVE:
            return existing
        customer = await self.ensure_customer(external_customer_id, now=now)
        plan = await self._store.get_plan(code=plan_code)
        subscription = Subscription(
            id=_new_id(),
            external_id=external_id,
            customer_id=customer.id,
            external_customer_id=customer.external_id,
            plan_id=plan.id,
            plan_code=plan.code,
            status=SubscriptionStatus.ACTIVE,
            billing_time=BillingTime.CALENDAR,
            subscription_at=now,
            started_at=now,
            created_at=now,
        )
        await self._store.put_subscription(subscription)
        return subscription

    async def current_usage(
        self,
        external_subscription_id: str,
        *,
        now: datetime,
        only: tuple[str, str] | None = None,
    ) -> CustomerUsage:
        """The subscription's usage in the period containing ``now``, priced by its plan.

        ``only`` = (property, value) restricts the usage to the events carrying that property
        value (e.g. one key's share of a shared subscription), priced as if they were alone.
        """
        try:
            subscription = await self._store.get_subscription(external_id=external_subscription_id)
        except NotFound:
            raise NotAllowed("no_active_subscription") from None
        if subscription.status is not SubscriptionStatus.ACTIVE:
            raise NotAllowed("no_active_subscription")
        customer = await self._store.get_customer(external_id=subscription.external_customer_id)
        plan = await self._store.get_plan(id=subscription.plan_id)
        metrics: dict[str, BillableMetric] = {}
        for charge in plan.charges:
            if charge.billable_metric_id not in metrics:
                metrics[charge.billable_metric_id] = await self._store.get_metric(
                    id=charge.billable_metric_id
                )
        period = subscription_period(subscription, plan, now=now, timezone=customer.timezone)
        queries = usage_queries(
            external_subscription_id=subscription.external_id,
            plan=plan,
            metrics=metrics,
            period=period,
            premium=self._premium,
            matchers=self._matchers,
        )
        data: dict[str, ChargeData] = {}
        for charge_query in queries:
            query = charge_query.query
            if charge_query.kind is InputKind.GROUPS:
                if only is not None:
                    query = msgspec.structs.replace(query, group_keys=(*query.group_keys, only[0]))
                groups = await self._store.aggregate(query)
                data[charge_query.charge_id] = ChargeData(groups=_restrict_groups(groups, only))
            else:
                events = await self._store.list_events(
                    external_subscription_id=query.external_subscription_id,
                    code=query.code,
                    from_ts=query.from_ts,
                    to_ts=query.to_ts,
                )
                data[charge_query.charge_id] = ChargeData(events=_restrict_events(events, only))
        return customer_usage(
            period=period,
            plan=plan,
            metrics=metrics,
            data=data,
            premium=self._premium,
            matchers=self._matchers,
        )


def _restrict_groups(
    groups: Sequence[GroupAggregate], only: tuple[str, str] | None
) -> list[GroupAggregate]:
    """Keep the groups whose last value (the ``only`` property) matches, without that value."""
    if only is None:
        return list(groups)
    return [
        msgspec.structs.replace(group, values=group.values[:-1])
        for group in groups
        if group.values[-1] == only[1]
    ]


def _restrict_events(events: Sequence[Event], only: tuple[str, str] | None) -> list[Event]:
    if only is None:
        return list(events)
    name, value = only
    return [event for event in events if property_text(event.properties.get(name)) == value]
