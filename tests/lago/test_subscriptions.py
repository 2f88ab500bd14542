"""``/api/v1/subscriptions``: create (idempotent), show, list with filters, terminate."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Subscription

from metering.models import Interval, Plan
from metering.store.sqlite import SQLiteStore
from proxy.app import sqlite_path
from tests.lago.conftest import AdminGateway


def _body(**fields: Any) -> dict[str, Any]:
    base = {"external_customer_id": "cust", "plan_code": "llm_default", "external_id": "sub"}
    return {"subscription": {**base, **fields}}


def test_create_with_unknown_customer_creates_it(lago: Client) -> None:
    created = lago.subscriptions.create(
        Subscription(external_customer_id="new-c", plan_code="llm_default", external_id="s-1")
    )
    assert created is not None
    assert created.status == "active"
    assert created.billing_time == "calendar"
    assert created.plan_amount_currency == "USD"
    assert created.started_at == created.subscription_at
    assert created.current_billing_period_started_at is not None
    customer = lago.customers.find("new-c")
    assert created.lago_customer_id == customer.lago_id


def test_create_is_idempotent_for_the_same_plan(http: httpx.Client) -> None:
    first = http.post("/subscriptions", json=_body())
    again = http.post("/subscriptions", json=_body())
    assert first.status_code == again.status_code == 200
    assert first.json()["subscription"]["lago_id"] == again.json()["subscription"]["lago_id"]
    listed = http.get("/subscriptions", params={"external_customer_id": "cust"}).json()
    assert listed["meta"]["total_count"] == 1


def test_unknown_plan_is_404_and_writes_nothing(http: httpx.Client) -> None:
    response = http.post("/subscriptions", json=_body(plan_code="nope"))
    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found", "code": "plan_not_found"}
    assert http.get("/customers/cust").status_code == 404


def test_validation_issues_together(http: httpx.Client) -> None:
    response = http.post(
        "/subscriptions",
        json=_body(external_customer_id="", billing_time="weekly", subscription_at="yesterday"),
    )
    assert response.status_code == 422
    assert response.json()["error_details"] == {
        "external_customer_id": ["value_is_mandatory"],
        "billing_time": ["value_is_invalid"],
        "subscription_at": ["invalid_date"],
    }


def test_external_id_taken_by_another_customer(http: httpx.Client) -> None:
    assert http.post("/subscriptions", json=_body()).status_code == 200
    response = http.post("/subscriptions", json=_body(external_customer_id="other"))
    assert response.status_code == 422
    assert response.json()["error_details"] == {"external_id": ["value_already_exist"]}
    assert http.get("/customers/other").status_code == 404


def test_plan_change_is_rejected(http: httpx.Client, admin_gateway: AdminGateway) -> None:

    assert http.post("/subscriptions", json=_body()).status_code == 200

    async def add_plan() -> None:
        store = SQLiteStore(sqlite_path(admin_gateway.settings.store.url))
        await store.open()
        try:
            await store.put_plan(
                Plan(
                    id="plan-2",
                    code="other_plan",
                    name="Other",
                    interval=Interval.MONTHLY,
                    amount_cents=0,
                    amount_currency="USD",
                    created_at=datetime.now(UTC),
                )
            )
        finally:
            await store.close()

    asyncio.run(add_plan())
    response = http.post("/subscriptions", json=_body(plan_code="other_plan"))
    assert response.status_code == 422
    assert response.json()["error_details"] == {"plan_code": ["plan_change_not_supported"]}


def test_anniversary_and_backdated_start(lago: Client) -> None:
    start = (datetime.now(UTC) - timedelta(days=40)).replace(microsecond=0)
    created = lago.subscriptions.create(
        Subscription(
            external_customer_id="cust",
            plan_code="llm_default",
            external_id="s-anniv",
            billing_time="anniversary",
            subscription_at=start.isoformat().replace("+00:00", "Z"),
        )
    )
    assert created is not None
    assert created.status == "active"
    assert created.billing_time == "anniversary"
    assert created.started_at == start.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_future_start_is_pending(lago: Client) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    created = lago.subscriptions.create(
        Subscription(
            external_customer_id="cust",
            plan_code="llm_default",
            external_id="s-later",
            subscription_at=start.isoformat(),
        )
    )
    assert created is not None
    assert created.status == "pending"
    assert created.started_at is None


def test_show_list_and_filters(http: httpx.Client, lago: Client) -> None:
    for i, customer in enumerate(("a", "a", "b")):
        body = _body(external_customer_id=customer, external_id=f"s-{i}")
        assert http.post("/subscriptions", json=body).status_code == 200
    lago.subscriptions.destroy("s-1")
    shown = lago.subscriptions.find("s-0")
    assert shown.external_customer_id == "a"
    active = http.get("/subscriptions", params={"external_customer_id": "a"}).json()
    assert [s["external_id"] for s in active["subscriptions"]] == ["s-0"]
    terminated = http.get(
        "/subscriptions", params={"external_customer_id": "a", "status[]": "terminated"}
    ).json()
    assert [s["external_id"] for s in terminated["subscriptions"]] == ["s-1"]
    both = http.get(
        "/subscriptions",
        params=[("status[]", "active"), ("status[]", "terminated"), ("plan_code", "llm_default")],
    ).json()
    assert both["meta"]["total_count"] == 3
    paged = lago.subscriptions.find_all({"per_page": 1, "page": 2})
    assert [s.external_id for s in paged["subscriptions"]] == ["s-2"]
    assert paged["meta"]["total_pages"] == 2


def test_terminate(lago: Client) -> None:
    lago.subscriptions.create(
        Subscription(external_customer_id="cust", plan_code="llm_default", external_id="s-t")
    )
    ended = lago.subscriptions.destroy("s-t")
    assert ended.status == "terminated"
    assert ended.terminated_at is not None
    with pytest.raises(LagoApiError) as error:
        lago.subscriptions.destroy("s-t")
    assert error.value.status_code == 404
    assert error.value.response["code"] == "subscription_not_found"
    # A new subscription may reuse the external id once the old one is over.
    again = lago.subscriptions.create(
        Subscription(external_customer_id="cust", plan_code="llm_default", external_id="s-t")
    )
    assert again is not None
    assert again.status == "active"
    assert again.lago_id != ended.lago_id


def test_terminating_a_pending_subscription_cancels_it(http: httpx.Client) -> None:
    later = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    assert http.post("/subscriptions", json=_body(subscription_at=later)).status_code == 200
    ended = http.delete("/subscriptions/sub").json()["subscription"]
    assert ended["status"] == "canceled"
    assert ended["canceled_at"] is not None
    assert ended["terminated_at"] is None


def test_unknown_subscription_is_404(http: httpx.Client) -> None:
    response = http.get("/subscriptions/none")
    assert response.status_code == 404
    assert response.json()["code"] == "subscription_not_found"
