"""Lago's subscription rules (reference/lago-semantics.md sections 5 and 7), without HTTP or clock.

Creation is validated in two steps: :func:`validate_subscription` checks the input alone
(every issue at once); :func:`decide_subscription` then weighs it against what is stored (the
plan, the customer, a live subscription with the same external id) and either returns the
existing subscription (idempotent re-post), a new record to write, or raises.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from metering.errors import Conflict, NotFound, ValidationFailed
from metering.models import BillingTime, Customer, Plan, Subscription, SubscriptionStatus

__all__ = [
    "LIVE_STATUSES",
    "Decision",
    "SubscriptionInput",
    "decide_subscription",
    "parse_datetime",
    "parse_subscription",
    "terminate_subscription",
    "validate_subscription",
]

#: Statuses under which an external id is taken.
LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING)


class SubscriptionInput(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``POST /subscriptions`` body."""

    external_customer_id: str
    plan_code: str
    external_id: str
    billing_time: BillingTime
    subscription_at: datetime | None
    ending_at: datetime | None
    name: str | None


class Decision(enum.Enum):
    """What :func:`decide_subscription` concluded."""

    EXISTING = "existing"
    CREATE = "create"


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 datetime as aware UTC (naive means UTC); ``None`` if it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = f"{text[:-1]}+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def validate_subscription(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every problem of a subscription input on its own, Lago-style."""
    issues: dict[str, list[str]] = {}
    for field in ("external_customer_id", "external_id", "plan_code"):
        if _text(raw.get(field)) is None:
            issues[field] = ["value_is_mandatory"]
    billing_time = raw.get("billing_time")
    if billing_time is not None and billing_time not in {b.value for b in BillingTime}:
        issues["billing_time"] = ["value_is_invalid"]
    subscription_at = raw.get("subscription_at")
    start = parse_datetime(subscription_at)
    if subscription_at is not None and start is None:
        issues["subscription_at"] = ["invalid_date"]
    ending_at = raw.get("ending_at")
    end = parse_datetime(ending_at)
    unparsable = ending_at is not None and end is None
    if unparsable or (end is not None and start is not None and end <= start):
        issues["ending_at"] = ["invalid_date"]
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        issues["name"] = ["value_is_invalid"]
    return issues


def parse_subscription(raw: Mapping[str, Any]) -> SubscriptionInput:
    """The validated input (ValidationFailed with every issue otherwise)."""
    issues = validate_subscription(raw)
    if issues:
        raise ValidationFailed(issues)
    name = raw.get("name")
    return SubscriptionInput(
        external_customer_id=_text(raw["external_customer_id"]) or "",
        plan_code=_text(raw["plan_code"]) or "",
        external_id=_text(raw["external_id"]) or "",
        billing_time=BillingTime(raw.get("billing_time") or BillingTime.CALENDAR),
        subscription_at=parse_datetime(raw.get("subscription_at")),
        ending_at=parse_datetime(raw.get("ending_at")),
        name=name if isinstance(name, str) else None,
    )


def _local_date(moment: datetime, timezone: str | None) -> date:
    return moment.astimezone(ZoneInfo(timezone) if timezone else UTC).date()


def decide_subscription(
    request: SubscriptionInput,
    *,
    plan: Plan | None,
    customer: Customer | None,
    live: Subscription | None,
    id: str,
    customer_id: str,
    now: datetime,
) -> tuple[Decision, Subscription]:
    """Weigh a validated input against the stored state.

    ``live`` is the active or pending subscription with the requested external id, if any;
    ``customer`` the stored customer (``None``: it will be created with ``customer_id``).
    Raises NotFound (unknown plan) or Conflict (external id taken, or a plan change, which
    tallygate does not support).
    """
    if plan is None:
        raise NotFound("plan")
    if live is not None:
        if live.external_customer_id != request.external_customer_id:
            raise Conflict({"external_id": ["value_already_exist"]})
        if live.plan_code != plan.code:
            # Lago treats this as an upgrade/downgrade; tallygate does not change plans.
            raise Conflict({"plan_code": ["plan_change_not_supported"]})
        return Decision.EXISTING, live
    timezone = customer.timezone if customer is not None else None
    start = request.subscription_at or now
    # Today or earlier in the customer's time zone starts at once; a later day waits.
    active = _local_date(start, timezone) <= _local_date(now, timezone)
    subscription = Subscription(
        id=id,
        external_id=request.external_id,
        customer_id=customer.id if customer is not None else customer_id,
        external_customer_id=request.external_customer_id,
        plan_id=plan.id,
        plan_code=plan.code,
        status=SubscriptionStatus.ACTIVE if active else SubscriptionStatus.PENDING,
        billing_time=request.billing_time,
        subscription_at=start,
        created_at=now,
        started_at=start if active else None,
        ending_at=request.ending_at,
        name=request.name,
    )
    return Decision.CREATE, subscription


def terminate_subscription(subscription: Subscription, *, now: datetime) -> Subscription:
    """An active subscription terminated at ``now``; a pending one canceled.

    Raises NotFound when it is neither active nor pending (nothing left to terminate).
    """
    if subscription.status is SubscriptionStatus.ACTIVE:
        status = SubscriptionStatus.TERMINATED
    elif subscription.status is SubscriptionStatus.PENDING:
        status = SubscriptionStatus.CANCELED
    else:
        raise NotFound("subscription")
    return msgspec.structs.replace(subscription, status=status, terminated_at=now)
