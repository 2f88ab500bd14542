"""``/api/v1/billable_metrics``: create, show, list, update, delete through the real app."""

from __future__ import annotations

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BillableMetric, BillableMetricFilter, BillableMetricFilters

from tests.lago.conftest import AdminGateway

MODELS = ["gpt-4o-mini", "gpt-4o"]


def _walkthrough_metric() -> BillableMetric:
    return BillableMetric(
        name="Tokens",
        code="tokens",
        aggregation_type="sum_agg",
        field_name="tokens",
        filters=BillableMetricFilters(
            __root__=[
                BillableMetricFilter(key="type", values=["output", "input", "input"]),
                BillableMetricFilter(key="model", values=MODELS),
            ]
        ),
    )


def test_walkthrough_metric_round_trip(lago: Client, http: httpx.Client) -> None:
    created = lago.billable_metrics.create(_walkthrough_metric())
    assert created is not None
    assert created.lago_id
    assert (created.code, created.aggregation_type, created.field_name) == (
        "tokens",
        "sum_agg",
        "tokens",
    )
    found = lago.billable_metrics.find("tokens")
    assert found is not None
    assert found.lago_id == created.lago_id
    body = http.get("/billable_metrics/tokens").json()["billable_metric"]
    assert body == {
        "lago_id": created.lago_id,
        "name": "Tokens",
        "code": "tokens",
        "description": None,
        "aggregation_type": "sum_agg",
        "weighted_interval": None,
        "recurring": False,
        "rounding_function": None,
        "rounding_precision": None,
        "created_at": created.created_at,
        "field_name": "tokens",
        "expression": None,
        # Ordered by key, values sorted and deduplicated.
        "filters": [
            {"key": "model", "values": ["gpt-4o", "gpt-4o-mini"]},
            {"key": "type", "values": ["input", "output"]},
        ],
        "active_subscriptions_count": 0,
        "draft_invoices_count": 0,
        "plans_count": 0,
    }


def test_list_is_paginated(lago: Client, http: httpx.Client) -> None:
    for index in range(3):
        lago.billable_metrics.create(
            BillableMetric(
                name=f"Count {index}", code=f"count_{index}", aggregation_type="count_agg"
            )
        )
    everything = lago.billable_metrics.find_all()
    codes = [m.code for m in everything["billable_metrics"]]
    assert {"count_0", "count_1", "count_2"} <= set(codes)
    total = len(codes)
    page = http.get("/billable_metrics", params={"page": 2, "per_page": 2}).json()
    assert page["meta"] == {
        "current_page": 2,
        "next_page": 3 if total > 4 else None,
        "prev_page": 1,
        "total_pages": -(-total // 2),
        "total_count": total,
    }
    assert [m["code"] for m in page["billable_metrics"]] == codes[2:4]


def test_update_and_destroy(lago: Client, http: httpx.Client) -> None:
    lago.billable_metrics.create(_walkthrough_metric())
    updated = lago.billable_metrics.update(
        BillableMetric(name="Tokens (renamed)", rounding_function="ceil", rounding_precision=2),
        "tokens",
    )
    assert updated is not None
    assert (updated.name, updated.code, updated.rounding_function, updated.rounding_precision) == (
        "Tokens (renamed)",
        "tokens",
        "ceil",
        2,
    )
    assert [f.key for f in updated.filters.__root__] == ["model", "type"]
    destroyed = lago.billable_metrics.destroy("tokens")
    assert destroyed is not None
    assert destroyed.name == "Tokens (renamed)"
    response = http.get("/billable_metrics/tokens")
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "error": "Not Found",
        "code": "billable_metric_not_found",
    }


def test_duplicate_code_is_422(lago: Client) -> None:
    lago.billable_metrics.create(_walkthrough_metric())
    with pytest.raises(LagoApiError) as raised:
        lago.billable_metrics.create(_walkthrough_metric())
    assert raised.value.status_code == 422
    assert raised.value.response is not None
    assert raised.value.response["error_details"] == {"code": ["value_already_exist"]}


def test_every_issue_is_listed_and_nothing_written(http: httpx.Client) -> None:
    before = http.get("/billable_metrics").json()["meta"]["total_count"]
    response = http.post(
        "/billable_metrics",
        json={
            "billable_metric": {
                "name": "Peak",
                "aggregation_type": "max_agg",
                "recurring": True,
                "filed_name": "gb",
                "filters": [{"key": "region", "values": []}, {"values": ["eu"]}],
            }
        },
    )
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {
            "filed_name": ["unknown_field"],
            "code": ["value_is_mandatory"],
            "field_name": ["value_is_mandatory"],
            "recurring": ["not_compatible_with_aggregation_type"],
            "filters": {
                "0": {"values": ["value_is_mandatory"]},
                "1": {"key": ["value_is_mandatory"]},
            },
        },
    }
    assert http.get("/billable_metrics").json()["meta"]["total_count"] == before


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (
            {"name": "x", "code": "x", "aggregation_type": "median_agg", "field_name": "f"},
            {"aggregation_type": ["value_is_invalid"]},
        ),
        (
            {"name": "x", "code": "x", "aggregation_type": "custom_agg"},
            {"aggregation_type": ["not_supported"]},
        ),
    ],
)
def test_aggregation_type_codes(
    http: httpx.Client, body: dict[str, object], details: dict[str, list[str]]
) -> None:
    response = http.post("/billable_metrics", json={"billable_metric": body})
    assert response.status_code == 422
    assert response.json()["error_details"] == details


def test_missing_root_is_400_and_unknown_is_404(http: httpx.Client) -> None:
    response = http.post("/billable_metrics", json={"name": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "BadRequest: param is missing or the value is empty or invalid: billable_metric",
    }
    for method in ("GET", "PUT", "DELETE"):
        response = http.request(
            method, "/billable_metrics/nope", json={"billable_metric": {"name": "y"}}
        )
        assert response.status_code == 404
        assert response.json()["code"] == "billable_metric_not_found"


def test_admin_key_is_required(admin_gateway: AdminGateway) -> None:
    url = f"{admin_gateway.api_url.rstrip('/')}/api/v1/billable_metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"status": 401, "error": "Unauthorized"}
