"""``/api/v1/plans``: plans with charges and charge filters, through the real app."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    BillableMetric,
    BillableMetricFilter,
    BillableMetricFilters,
    Charge,
    ChargeFilter,
    ChargeFilters,
    Charges,
    Plan,
)

from config import Settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from tests.lago.conftest import ADMIN_KEY

MODELS = ("gpt-4o", "gpt-4o-mini")
TYPES = ("input", "output")
# Lago's OpenAI template, per 1,000 tokens.
PRICES = {
    ("gpt-4o", "input"): "0.0025",
    ("gpt-4o", "output"): "0.01",
    ("gpt-4o-mini", "input"): "0.00015",
    ("gpt-4o-mini", "output"): "0.0006",
}


def _metric(lago: Client) -> str:
    created = lago.billable_metrics.create(
        BillableMetric(
            name="Tokens",
            code="tokens",
            aggregation_type="sum_agg",
            field_name="tokens",
            filters=BillableMetricFilters(
                __root__=[
                    BillableMetricFilter(key="model", values=list(MODELS)),
                    BillableMetricFilter(key="type", values=list(TYPES)),
                ]
            ),
        )
    )
    assert created is not None
    return created.lago_id


def _package(amount: str) -> dict[str, Any]:
    return {"amount": amount, "package_size": 1000, "free_units": 0}


def _template_plan(metric_id: str, code: str = "per_token") -> Plan:
    filters = [
        ChargeFilter(
            invoice_display_name=f"{model} {kind}",
            values={"model": [model], "type": [kind]},
            properties=_package(price),
        )
        for (model, kind), price in PRICES.items()
    ]
    return Plan(
        name="Per token",
        code=code,
        interval="monthly",
        amount_cents=0,
        amount_currency="USD",
        pay_in_advance=False,
        charges=Charges(
            __root__=[
                Charge(
                    billable_metric_id=metric_id,
                    charge_model="package",
                    pay_in_advance=False,
                    invoiceable=True,
                    properties=_package("0"),
                    filters=ChargeFilters(__root__=filters),
                )
            ]
        ),
    )


def test_template_plan_round_trip(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    created = lago.plans.create(_template_plan(metric_id))
    assert created is not None
    assert created.code == "per_token"
    found = lago.plans.find("per_token")
    assert found is not None
    assert found.lago_id == created.lago_id
    assert found.charges is not None
    (charge,) = found.charges.__root__
    assert charge.billable_metric_code == "tokens"
    assert charge.code == "tokens"
    body = http.get("/plans/per_token").json()["plan"]
    assert {k: body[k] for k in ("fixed_charges", "usage_thresholds", "taxes", "entitlements")} == {
        "fixed_charges": [],
        "usage_thresholds": [],
        "taxes": [],
        "entitlements": [],
    }
    assert (body["interval"], body["amount_cents"], body["amount_currency"]) == (
        "monthly",
        0,
        "USD",
    )
    (charge_body,) = body["charges"]
    assert charge_body["lago_billable_metric_id"] == metric_id
    assert charge_body["charge_model"] == "package"
    assert charge_body["properties"] == _package("0")
    assert charge_body["applied_pricing_unit"] is None
    assert charge_body["taxes"] == []
    assert [
        (f["invoice_display_name"], f["values"], f["properties"]) for f in charge_body["filters"]
    ] == [
        (f"{model} {kind}", {"model": [model], "type": [kind]}, _package(price))
        for (model, kind), price in PRICES.items()
    ]
    assert all(f["charge_code"] == "tokens" and f["lago_id"] for f in charge_body["filters"])


def test_all_filter_values_and_defaults(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    response = http.post(
        "/plans",
        json={
            "plan": {
                "name": "Graduated",
                "code": "graduated",
                "interval": "yearly",
                "amount_cents": 1000,
                "amount_currency": "EUR",
                "trial_period": 7,
                "charges": [
                    {"billable_metric_id": metric_id, "charge_model": "standard"},
                    {
                        "billable_metric_id": metric_id,
                        "charge_model": "graduated",
                        "filters": [
                            {
                                "values": {"model": ["__ALL_FILTER_VALUES__"]},
                                "properties": {
                                    "graduated_ranges": [
                                        {
                                            "from_value": 0,
                                            "to_value": 10.5,
                                            "per_unit_amount": "1",
                                            "flat_amount": "0",
                                        },
                                        {
                                            "from_value": 10.5,
                                            "to_value": None,
                                            "per_unit_amount": "0.5",
                                            "flat_amount": "2",
                                        },
                                    ]
                                },
                            }
                        ],
                    },
                ],
            }
        },
    )
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["trial_period"] == 7
    first, second = plan["charges"]
    assert (first["code"], first["properties"]) == ("tokens", {"amount": "0"})
    assert second["code"] == "tokens_2"
    assert second["properties"] == {
        "graduated_ranges": [
            {"from_value": 0, "to_value": None, "per_unit_amount": "0", "flat_amount": "0"}
        ]
    }
    (charge_filter,) = second["filters"]
    assert charge_filter["values"] == {"model": ["__ALL_FILTER_VALUES__"]}
    ranges = charge_filter["properties"]["graduated_ranges"]
    assert [r["to_value"] for r in ranges] == [10.5, None]


def test_every_issue_is_listed_and_nothing_written(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    before = http.get("/plans").json()["meta"]["total_count"]
    response = http.post(
        "/plans",
        json={
            "plan": {
                "name": "Bad",
                "code": "bad",
                "interval": "daily",
                "amount_currency": "USD",
                "amonut_cents": 10,
                "charges": [
                    {
                        "billable_metric_id": metric_id,
                        "charge_model": "package",
                        "pay_in_advance": True,
                        "properties": {"amount": "1", "package_size": 0, "free_units": 0},
                        "filters": [
                            {"values": {"model": ["gpt-5"]}, "properties": _package("1")},
                            {
                                "values": {"type": ["input"]},
                                "properties": {"amount": 1, "package_size": 10, "free_units": 0},
                            },
                        ],
                    }
                ],
            }
        },
    )
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {
            "amonut_cents": ["unknown_field"],
            "interval": ["value_is_invalid"],
            "amount_cents": ["value_is_mandatory"],
            "charges": {
                "0": {
                    "pay_in_advance": ["not_supported"],
                    "properties": ["invalid_package_size"],
                    "filters": {
                        "0": {"values": ["value_is_invalid"]},
                        "1": {"properties": ["invalid_amount"]},
                    },
                }
            },
        },
    }
    assert http.get("/plans").json()["meta"]["total_count"] == before


def test_unknown_metric_is_404(http: httpx.Client) -> None:
    response = http.post(
        "/plans",
        json={
            "plan": {
                "name": "P",
                "code": "p",
                "interval": "monthly",
                "amount_cents": 0,
                "amount_currency": "USD",
                "charges": [{"billable_metric_id": "missing", "charge_model": "standard"}],
            }
        },
    )
    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "error": "Not Found",
        "code": "billable_metrics_not_found",
    }


def test_duplicate_code_and_graduated_percentage_without_premium(lago: Client) -> None:
    metric_id = _metric(lago)
    lago.plans.create(_template_plan(metric_id))
    with pytest.raises(LagoApiError) as raised:
        lago.plans.create(_template_plan(metric_id))
    assert raised.value.status_code == 422
    assert raised.value.response is not None
    assert raised.value.response["error_details"] == {"code": ["value_already_exist"]}
    plan = Plan(
        name="GP",
        code="gp",
        interval="monthly",
        amount_cents=0,
        amount_currency="USD",
        charges=Charges(
            __root__=[Charge(billable_metric_id=metric_id, charge_model="graduated_percentage")]
        ),
    )
    with pytest.raises(LagoApiError) as raised:
        lago.plans.create(plan)
    assert raised.value.response is not None
    assert raised.value.response["error_details"] == {
        "charges": {"0": {"charge_model": ["graduated_percentage_requires_premium_license"]}}
    }


def test_graduated_percentage_with_premium(admin_settings: Settings) -> None:
    settings = msgspec.structs.replace(
        admin_settings,
        metering=msgspec.structs.replace(admin_settings.metering, premium=True),
    )
    with BackgroundServer(create_app(settings), lifespan="on", name="premium") as server:
        lago = Client(api_key=ADMIN_KEY, api_url=server.url)
        metric_id = _metric(lago)
        created = lago.plans.create(
            Plan(
                name="GP",
                code="gp",
                interval="monthly",
                amount_cents=0,
                amount_currency="USD",
                charges=Charges(
                    __root__=[
                        Charge(billable_metric_id=metric_id, charge_model="graduated_percentage")
                    ]
                ),
            )
        )
    assert created is not None
    assert created.charges is not None
    assert created.charges.__root__[0].charge_model == "graduated_percentage"


def test_update_list_and_destroy(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    created = lago.plans.create(_template_plan(metric_id))
    assert created is not None
    assert created.charges is not None
    charge_id = created.charges.__root__[0].lago_id
    updated = lago.plans.update(
        Plan(
            name="Per token v2",
            charges=Charges(
                __root__=[
                    Charge(
                        id=charge_id,
                        billable_metric_id=metric_id,
                        charge_model="standard",
                        properties={"amount": "0.000001"},
                    )
                ]
            ),
        ),
        "per_token",
    )
    assert updated is not None
    assert (updated.name, updated.lago_id, updated.interval) == (
        "Per token v2",
        created.lago_id,
        "monthly",
    )
    assert updated.charges is not None
    (charge,) = updated.charges.__root__
    assert (charge.lago_id, charge.charge_model, charge.properties) == (
        charge_id,
        "standard",
        {"amount": "0.000001"},
    )
    listed = lago.plans.find_all({"per_page": 1})
    assert listed["meta"]["total_count"] == 2  # the seeded catalog plan and this one
    assert len(listed["plans"]) == 1
    destroyed = lago.plans.destroy("per_token")
    assert destroyed is not None
    assert destroyed.code == "per_token"
    response = http.get("/plans/per_token")
    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found", "code": "plan_not_found"}


def test_deleting_a_metric_drops_its_charges(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    lago.plans.create(_template_plan(metric_id))
    lago.billable_metrics.destroy("tokens")
    assert http.get("/plans/per_token").json()["plan"]["charges"] == []


def test_metric_filters_used_by_a_plan_cannot_disappear(lago: Client, http: httpx.Client) -> None:
    metric_id = _metric(lago)
    lago.plans.create(_template_plan(metric_id))
    response = http.put(
        "/billable_metrics/tokens",
        json={"billable_metric": {"filters": [{"key": "model", "values": ["gpt-4o"]}]}},
    )
    assert response.status_code == 422
    assert response.json()["error_details"] == {"filters": ["value_is_invalid"]}
    kept = http.get("/billable_metrics/tokens").json()["billable_metric"]["filters"]
    assert [f["key"] for f in kept] == ["model", "type"]


def test_missing_root_and_auth(http: httpx.Client) -> None:
    response = http.post("/plans", json={"name": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "BadRequest: param is missing or the value is empty or invalid: plan",
    }
    anonymous = httpx.get(str(http.base_url.join("plans")))
    assert anonymous.status_code == 401
    assert anonymous.json() == {"status": 401, "error": "Unauthorized"}
