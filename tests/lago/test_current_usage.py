"""``GET /api/v1/customers/{id}/current_usage``: errors and the usage shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError

NO_ACTIVE = {"status": 405, "error": "Method Not Allowed", "code": "no_active_subscription"}


def _subscribe(http: httpx.Client, customer: str, external_id: str, **extra: Any) -> None:
    body = {
        "external_customer_id": customer,
        "plan_code": "llm_default",
        "external_id": external_id,
        **extra,
    }
    response = http.post("/subscriptions", json={"subscription": body})
    assert response.status_code == 200


def _usage(http: httpx.Client, customer: str, subscription: str | None) -> httpx.Response:
    params = {} if subscription is None else {"external_subscription_id": subscription}
    return http.get(f"/customers/{customer}/current_usage", params=params)


def test_unknown_customer_is_404(lago: Client) -> None:
    with pytest.raises(LagoApiError) as error:
        lago.customers.current_usage("ghost", "sub")
    assert error.value.status_code == 404
    assert error.value.response == {
        "status": 404,
        "error": "Not Found",
        "code": "customer_not_found",
    }


def test_no_active_subscription_cases(http: httpx.Client) -> None:
    _subscribe(http, "a", "a-sub")
    _subscribe(http, "b", "b-sub")
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    _subscribe(http, "a", "a-pending", subscription_at=later)
    _subscribe(http, "a", "a-ended")
    assert http.delete("/subscriptions/a-ended").status_code == 200
    for subscription in (None, "", "missing", "b-sub", "a-pending", "a-ended"):
        response = _usage(http, "a", subscription)
        assert response.status_code == 405, subscription
        assert response.json() == NO_ACTIVE
    assert _usage(http, "a", "a-sub").status_code == 200


def test_empty_usage_shape(http: httpx.Client) -> None:
    _subscribe(http, "c", "c-sub")
    response = _usage(http, "c", "c-sub")
    assert response.status_code == 200
    usage = response.json()["customer_usage"]
    now = datetime.now(UTC)
    assert usage["from_datetime"].startswith(now.strftime("%Y-%m"))
    assert usage["to_datetime"].endswith("T23:59:59Z")
    assert usage["issuing_date"] == usage["to_datetime"][:10]
    assert usage["currency"] == "USD"
    assert (usage["amount_cents"], usage["taxes_amount_cents"], usage["total_amount_cents"]) == (
        0,
        0,
        0,
    )
    assert usage["lago_invoice_id"] is None
    [charge] = usage["charges_usage"]
    assert charge["billable_metric"]["code"] == "llm_tokens"
    assert charge["charge"]["charge_model"] == "package"
    assert (charge["units"], charge["events_count"], charge["amount_cents"]) == ("0.0", 0, 0)
    assert len(charge["filters"]) > 1
    assert all(f["units"] == "0.0" and f["amount_cents"] == 0 for f in charge["filters"])
    assert [f for f in charge["filters"] if f["values"] is None] == [
        {
            "units": "0.0",
            "total_aggregated_units": "0.0",
            "events_count": 0,
            "amount_cents": 0,
            "pricing_unit_details": None,
            "invoice_display_name": None,
            "values": None,
            "presentation_breakdowns": [],
        }
    ]


def test_events_before_the_start_and_of_other_subscriptions_are_ignored(
    http: httpx.Client,
) -> None:
    _subscribe(http, "d", "d-sub")
    start = datetime.fromisoformat(
        http.get("/subscriptions/d-sub").json()["subscription"]["started_at"].replace("Z", "+00:00")
    )
    properties = {"model": "gpt-4", "type": "output", "tokens": 10}
    events = [
        {
            "transaction_id": "early",
            "external_subscription_id": "d-sub",
            "code": "llm_tokens",
            "timestamp": int((start - timedelta(seconds=5)).timestamp()),
            "properties": properties,
        },
        {
            "transaction_id": "elsewhere",
            "external_subscription_id": "other-sub",
            "code": "llm_tokens",
            "properties": properties,
        },
        {
            "transaction_id": "counted",
            "external_subscription_id": "d-sub",
            "code": "llm_tokens",
            "properties": properties,
        },
        {
            "transaction_id": "other-code",
            "external_subscription_id": "d-sub",
            "code": "not_a_metric",
            "properties": properties,
        },
    ]
    assert http.post("/events/batch", json={"events": events}).status_code == 200
    usage = _usage(http, "d", "d-sub").json()["customer_usage"]
    [charge] = usage["charges_usage"]
    assert (charge["units"], charge["events_count"], charge["amount_cents"]) == ("10.0", 1, 6)
    [bucket] = [
        f for f in charge["filters"] if f["values"] == {"model": ["gpt-4"], "type": ["output"]}
    ]
    assert (bucket["units"], bucket["amount_cents"]) == ("10.0", 6)
