"""Pure rules of subscription creation and termination."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from metering.api_subscriptions import (
    Decision,
    decide_subscription,
    parse_datetime,
    parse_subscription,
    terminate_subscription,
    validate_subscription,
)
from metering.errors import Conflict, NotFound, ValidationFailed
from metering.models import BillingTime, Customer, Interval, Plan, SubscriptionStatus

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
PLAN = Plan(
    id="p",
    code="llm_default",
    name="Default",
    interval=Interval.MONTHLY,
    amount_cents=0,
    amount_currency="USD",
    created_at=NOW,
)


def _input(**fields: Any) -> Any:
    base = {"external_customer_id": "c", "plan_code": "llm_default", "external_id": "s"}
    return parse_subscription({**base, **fields})


def _decide(request: Any, **kwargs: Any) -> Any:
    defaults: dict[str, Any] = {
        "plan": PLAN,
        "customer": None,
        "live": None,
        "id": "sub-id",
        "customer_id": "cust-id",
        "now": NOW,
    }
    return decide_subscription(request, **{**defaults, **kwargs})


def test_parse_datetime() -> None:
    assert parse_datetime("2025-06-01T10:00:00Z") == datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert parse_datetime("2025-06-01T12:00:00+02:00") == datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert parse_datetime("2025-06-01") == datetime(2025, 6, 1, tzinfo=UTC)
    assert parse_datetime("soon") is None
    assert parse_datetime(1700000000) is None


def test_validate_collects_every_issue() -> None:
    assert validate_subscription(
        {"billing_time": "weekly", "subscription_at": "x", "ending_at": "y", "name": 1}
    ) == {
        "external_customer_id": ["value_is_mandatory"],
        "external_id": ["value_is_mandatory"],
        "plan_code": ["value_is_mandatory"],
        "billing_time": ["value_is_invalid"],
        "subscription_at": ["invalid_date"],
        "ending_at": ["invalid_date"],
        "name": ["value_is_invalid"],
    }
    with pytest.raises(ValidationFailed):
        _input(ending_at="2025-01-01T00:00:00Z", subscription_at="2025-02-01T00:00:00Z")


def test_defaults() -> None:
    request = _input()
    assert request.billing_time is BillingTime.CALENDAR
    decision, subscription = _decide(request)
    assert decision is Decision.CREATE
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.subscription_at == subscription.started_at == NOW
    assert (subscription.id, subscription.customer_id) == ("sub-id", "cust-id")


def test_unknown_plan() -> None:
    with pytest.raises(NotFound) as error:
        _decide(_input(), plan=None)
    assert error.value.code == "plan_not_found"


def test_backdated_and_future_starts() -> None:
    _, past = _decide(_input(subscription_at="2025-03-07T08:00:00Z", billing_time="anniversary"))
    assert past.status is SubscriptionStatus.ACTIVE
    assert past.started_at == datetime(2025, 3, 7, 8, tzinfo=UTC)
    assert past.billing_time is BillingTime.ANNIVERSARY
    _, later_today = _decide(_input(subscription_at="2025-06-15T20:00:00Z"))
    assert later_today.status is SubscriptionStatus.ACTIVE
    _, future = _decide(_input(subscription_at="2025-06-16T00:00:00Z"))
    assert future.status is SubscriptionStatus.PENDING
    assert future.started_at is None


def test_today_is_the_customers_day() -> None:
    # NOW is 2025-06-15 21:00 in Tokyo; 2025-06-15T16:00Z is already the 16th there.
    tokyo = Customer(id="k", external_id="c", created_at=NOW, updated_at=NOW, timezone="Asia/Tokyo")
    _, sub = _decide(_input(subscription_at="2025-06-15T16:00:00Z"), customer=tokyo)
    assert sub.status is SubscriptionStatus.PENDING
    assert sub.customer_id == "k"
    _, utc_sub = _decide(_input(subscription_at="2025-06-15T16:00:00Z"))
    assert utc_sub.status is SubscriptionStatus.ACTIVE


def test_existing_live_subscription() -> None:
    _, live = _decide(_input())
    decision, same = _decide(_input(), live=live)
    assert decision is Decision.EXISTING
    assert same is live
    with pytest.raises(Conflict) as taken:
        _decide(_input(external_customer_id="other"), live=live)
    assert taken.value.issues == {"external_id": ["value_already_exist"]}
    other_plan = msgspec.structs.replace(PLAN, id="p2", code="other")
    with pytest.raises(Conflict) as change:
        _decide(_input(plan_code="other"), live=live, plan=other_plan)
    assert change.value.issues == {"plan_code": ["plan_change_not_supported"]}


def test_terminate() -> None:
    _, active = _decide(_input())
    ended = terminate_subscription(active, now=NOW)
    assert (ended.status, ended.terminated_at) == (SubscriptionStatus.TERMINATED, NOW)
    _, pending = _decide(_input(subscription_at="2025-07-01T00:00:00Z"))
    assert terminate_subscription(pending, now=NOW).status is SubscriptionStatus.CANCELED
    with pytest.raises(NotFound):
        terminate_subscription(ended, now=NOW)
