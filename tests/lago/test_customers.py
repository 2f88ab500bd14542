"""``/api/v1/customers``: upsert by external id, show, paginated list, delete."""

from __future__ import annotations

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Customer


def test_create_then_upsert_keeps_identity(lago: Client) -> None:
    created = lago.customers.create(
        Customer(external_id="c-1", name="Acme", currency="EUR", timezone="Europe/Paris")
    )
    assert created is not None
    assert created.lago_id
    assert (created.name, created.currency, created.timezone) == ("Acme", "EUR", "Europe/Paris")
    assert created.applicable_timezone == "Europe/Paris"
    updated = lago.customers.create(Customer(external_id="c-1", email="billing@acme.test"))
    assert updated is not None
    assert updated.lago_id == created.lago_id
    assert updated.created_at == created.created_at
    assert (updated.name, updated.email, updated.timezone) == (
        "Acme",
        "billing@acme.test",
        "Europe/Paris",
    )


def test_applicable_timezone_defaults_to_utc(lago: Client) -> None:
    created = lago.customers.create(Customer(external_id="c-utc"))
    assert created is not None
    assert created.timezone is None
    assert created.applicable_timezone == "UTC"


def test_validation_reports_every_issue(http: httpx.Client) -> None:
    response = http.post(
        "/customers",
        json={"customer": {"external_id": " ", "timezone": "Mars/Base", "currency": "dollars"}},
    )
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {
            "external_id": ["value_is_mandatory"],
            "timezone": ["invalid_timezone"],
            "currency": ["value_is_invalid"],
        },
    }
    assert http.get("/customers").json()["customers"] == []


def test_missing_root_is_400(http: httpx.Client) -> None:
    response = http.post("/customers", json={"external_id": "c"})
    assert response.status_code == 400
    assert response.json()["error"].endswith(": customer")


def test_show_and_unknown(lago: Client) -> None:
    lago.customers.create(Customer(external_id="c-2", name="Two"))
    found = lago.customers.find("c-2")
    assert found.name == "Two"
    with pytest.raises(LagoApiError) as error:
        lago.customers.find("nobody")
    assert error.value.status_code == 404
    assert error.value.response == {
        "status": 404,
        "error": "Not Found",
        "code": "customer_not_found",
    }


def test_list_is_paginated(http: httpx.Client, lago: Client) -> None:
    for i in range(3):
        lago.customers.create(Customer(external_id=f"p-{i}"))
    first = http.get("/customers", params={"per_page": 2, "page": 1}).json()
    assert [c["external_id"] for c in first["customers"]] == ["p-0", "p-1"]
    assert first["meta"] == {
        "current_page": 1,
        "next_page": 2,
        "prev_page": None,
        "total_pages": 2,
        "total_count": 3,
    }
    second = lago.customers.find_all({"per_page": 2, "page": 2})
    assert [c.external_id for c in second["customers"]] == ["p-2"]
    assert second["meta"]["prev_page"] == 1


def test_delete(lago: Client, http: httpx.Client) -> None:
    lago.customers.create(Customer(external_id="c-del"))
    deleted = lago.customers.destroy("c-del")
    assert deleted.external_id == "c-del"
    assert http.get("/customers/c-del").status_code == 404
    assert http.delete("/customers/c-del").status_code == 404


def test_delete_terminates_live_subscriptions(http: httpx.Client) -> None:
    body = {"external_customer_id": "c-sub", "plan_code": "llm_default", "external_id": "s-1"}
    assert http.post("/subscriptions", json={"subscription": body}).status_code == 200
    assert http.delete("/customers/c-sub").status_code == 200
    subscription = http.get("/subscriptions/s-1").json()["subscription"]
    assert subscription["status"] == "terminated"
    assert subscription["terminated_at"] is not None
