"""The seed walkthrough end to end with the unmodified lago-python-client.

Customer, subscription to the built-in ``llm_default`` plan, single and batched token events,
then ``current_usage`` checked against hand-computed package prices (gpt-4: input $0.03 and
output $0.06 per 1K tokens, gpt-4-32k input $0.06 per 1K; a started package is charged in
full), duplicates refused without changing the totals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, Customer, Event, Subscription

from proxy.catalog import default_metric, default_plan
from tests.lago.conftest import AdminGateway

CUSTOMER = "acme"
SUBSCRIPTION = "acme-llm"


def _event(transaction_id: str, model: str | None, kind: str, tokens: int) -> Event:
    properties: dict[str, Any] = {"type": kind, "tokens": tokens}
    if model is not None:
        properties["model"] = model
    return Event(
        transaction_id=transaction_id,
        external_subscription_id=SUBSCRIPTION,
        code="llm_tokens",
        properties=properties,
    )


def _bucket(usage: Any, model: str, kind: str) -> Any:
    matches = [
        f for f in usage.charges_usage[0].filters if f.values == {"model": [model], "type": [kind]}
    ]
    assert len(matches) == 1, (model, kind)
    return matches[0]


def _default_bucket(usage: Any) -> Any:
    matches = [f for f in usage.charges_usage[0].filters if f.values is None]
    assert len(matches) == 1
    return matches[0]


def _expected_filters(admin_gateway: AdminGateway) -> int:
    now = datetime.now(UTC)
    plan = default_plan(admin_gateway.settings, default_metric(admin_gateway.settings, now), now)
    return len(plan.charges[0].filters) + 1  # every priced filter plus the default bucket


def test_seed_walkthrough(lago: Client, admin_gateway: AdminGateway) -> None:
    customer = lago.customers.create(Customer(external_id=CUSTOMER, name="Acme", currency="USD"))
    assert customer is not None
    assert customer.external_id == CUSTOMER
    assert customer.applicable_timezone == "UTC"

    subscription = lago.subscriptions.create(
        Subscription(
            external_customer_id=CUSTOMER, plan_code="llm_default", external_id=SUBSCRIPTION
        )
    )
    assert subscription is not None
    assert subscription.status == "active"
    assert subscription.plan_code == "llm_default"

    # Single events.
    created = lago.events.create(_event("tx-1", "gpt-4", "input", 1200))
    assert created is not None
    assert created.transaction_id == "tx-1"
    assert created.properties == {"type": "input", "tokens": 1200, "model": "gpt-4"}
    lago.events.create(_event("tx-2", "gpt-4", "output", 300))
    # A batch: more gpt-4, some gpt-4-32k, and tokens of no catalog model (default bucket).
    lago.events.batch_create(
        BatchEvent(
            events=[
                _event("tx-3", "gpt-4", "input", 800),
                _event("tx-4", "gpt-4", "output", 500),
                _event("tx-5", "gpt-4-32k", "input", 1500),
                _event("tx-6", "mystery-model", "input", 100),
            ]
        )
    )

    usage = lago.customers.current_usage(CUSTOMER, SUBSCRIPTION)
    assert usage.currency == "USD"
    charge = usage.charges_usage[0]
    assert charge.billable_metric.code == "llm_tokens"
    assert len(charge.filters) == _expected_filters(admin_gateway)

    gpt4_in = _bucket(usage, "gpt-4", "input")  # 2000 tokens = 2 packages x 3 cents
    assert (gpt4_in.units, gpt4_in.events_count, gpt4_in.amount_cents) == ("2000.0", 2, 6)
    gpt4_out = _bucket(usage, "gpt-4", "output")  # 800 tokens = 1 started package x 6 cents
    assert (gpt4_out.units, gpt4_out.events_count, gpt4_out.amount_cents) == ("800.0", 2, 6)
    big_in = _bucket(usage, "gpt-4-32k", "input")  # 1500 tokens = 2 packages x 6 cents
    assert (big_in.units, big_in.events_count, big_in.amount_cents) == ("1500.0", 1, 12)
    untouched = _bucket(usage, "gpt-4-32k", "output")
    assert (untouched.units, untouched.events_count, untouched.amount_cents) == ("0.0", 0, 0)
    default = _default_bucket(usage)
    assert (default.units, default.events_count, default.amount_cents) == ("100.0", 1, 0)

    assert (charge.units, charge.events_count, charge.amount_cents) == ("4400.0", 6, 24)
    assert (usage.amount_cents, usage.total_amount_cents, usage.taxes_amount_cents) == (24, 24, 0)

    # A duplicate single event: 422 value_already_exist, totals unchanged.
    with pytest.raises(LagoApiError) as duplicate:
        lago.events.create(_event("tx-1", "gpt-4", "input", 99999))
    assert duplicate.value.status_code == 422
    assert duplicate.value.response["error_details"] == {"transaction_id": ["value_already_exist"]}

    # A batch with one duplicate stores nothing, not even its new events.
    with pytest.raises(LagoApiError) as batch:
        lago.events.batch_create(
            BatchEvent(
                events=[
                    _event("tx-7", "gpt-4", "input", 5000),
                    _event("tx-2", "gpt-4", "output", 5000),
                ]
            )
        )
    assert batch.value.status_code == 422
    assert batch.value.response["error_details"] == {
        "1": {"transaction_id": ["value_already_exist"]}
    }
    with pytest.raises(LagoApiError) as missing:
        lago.events.find("tx-7")
    assert missing.value.status_code == 404

    again = lago.customers.current_usage(CUSTOMER, SUBSCRIPTION)
    assert again.amount_cents == 24
    assert again.charges_usage[0].units == "4400.0"
    assert _bucket(again, "gpt-4", "input").units == "2000.0"
