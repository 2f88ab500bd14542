"""Pure rules of plans and charges: every issue at once, defaults, codes, filters, updates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from metering.api_plans import build_plan, referenced_metric_ids
from metering.errors import ValidationFailed
from metering.models import (
    AggregationType,
    BillableMetric,
    ChargeModel,
    Interval,
    MetricFilter,
    Plan,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 2, 1, tzinfo=UTC)
TOKENS = BillableMetric(
    id="bm-1",
    code="llm_tokens",
    name="LLM tokens",
    aggregation_type=AggregationType.SUM,
    field_name="tokens",
    created_at=T0,
    filters=(
        MetricFilter(key="model", values=("gpt-4o", "gpt-4o-mini")),
        MetricFilter(key="type", values=("input", "output")),
    ),
)
LATEST = BillableMetric(
    id="bm-2",
    code="seats",
    name="Seats",
    aggregation_type=AggregationType.LATEST,
    field_name="seats",
    created_at=T0,
)
METRICS = {TOKENS.id: TOKENS, LATEST.id: LATEST}
BASE: dict[str, Any] = {
    "name": "Plan",
    "code": "plan",
    "interval": "monthly",
    "amount_cents": 0,
    "amount_currency": "USD",
}


def _build(raw: dict[str, Any], **kwargs: Any) -> Plan:
    counter = itertools.count(1)
    options: dict[str, Any] = {"metrics": METRICS, "id": "p-1", "now": T0}
    options.update(kwargs)
    return build_plan(raw, new_id=lambda: f"id-{next(counter)}", **options)


def _issues(raw: dict[str, Any], **kwargs: Any) -> object:
    with pytest.raises(ValidationFailed) as raised:
        _build(raw, **kwargs)
    return raised.value.issues


def test_package_charge_with_filters_and_default_properties() -> None:
    plan = _build(
        {
            **BASE,
            "trial_period": 1.5,
            "charges": [
                {
                    "billable_metric_id": "bm-1",
                    "charge_model": "package",
                    "filters": [
                        {
                            "invoice_display_name": "gpt-4o input",
                            "values": {"model": ["gpt-4o"], "type": ["input"]},
                            "properties": {
                                "amount": "0.0025",
                                "package_size": 1000,
                                "free_units": 0,
                                "ignored": "x",
                            },
                        },
                        {
                            "values": {"model": ["__ALL_FILTER_VALUES__"], "type": ["output"]},
                            "properties": {"amount": "0.01", "package_size": 1000, "free_units": 0},
                        },
                    ],
                }
            ],
        }
    )
    assert (plan.id, plan.interval, plan.created_at) == ("p-1", Interval.MONTHLY, T0)
    assert str(plan.trial_period) == "1.5"
    (charge,) = plan.charges
    assert charge.code == "llm_tokens"
    assert charge.charge_model is ChargeModel.PACKAGE
    assert charge.properties == {"package_size": 1, "amount": "0", "free_units": 0}
    first, second = charge.filters
    assert first.values == {"model": ("gpt-4o",), "type": ("input",)}
    assert first.properties == {"amount": "0.0025", "free_units": 0, "package_size": 1000}
    assert first.invoice_display_name == "gpt-4o input"
    assert second.values["model"] == ("__ALL_FILTER_VALUES__",)
    assert len({charge.id, first.id, second.id}) == 3


def test_plan_issues_are_all_listed() -> None:
    assert _issues(
        {
            "interval": "daily",
            "amount_cents": "10",
            "pay_in_advance": "yes",
            "tax_codes": ["vat"],
            "charge": [],
        },
        code_taken=True,
    ) == {
        "charge": ["unknown_field"],
        "name": ["value_is_mandatory"],
        "code": ["value_is_mandatory"],
        "interval": ["value_is_invalid"],
        "amount_cents": ["value_is_invalid"],
        "amount_currency": ["value_is_mandatory"],
        "pay_in_advance": ["value_is_invalid"],
        "tax_codes": ["not_supported"],
    }
    assert _issues({**BASE, "amount_currency": "usd"}, code_taken=True) == {
        "code": ["value_already_exist"],
        "amount_currency": ["value_is_invalid"],
    }


def test_charge_issues_are_nested_by_index() -> None:
    issues = _issues(
        {
            **BASE,
            "charges": [
                {"billable_metric_id": "bm-1", "charge_model": "standard"},
                {
                    "billable_metric_id": "bm-1",
                    "charge_model": "standard",
                    "pay_in_advance": True,
                    "prorated": True,
                    "properties": {"amount": 5},
                    "filters": [
                        {"values": {"model": ["gpt-3.5"]}, "properties": {"amount": "1"}},
                        {"values": {"region": ["eu"]}, "properties": {"amount": "1"}},
                        {"values": {}, "properties": {}},
                        {"values": {"type": ["input"]}, "properties": {"amount": "1"}},
                    ],
                },
                {"charge_model": "tiered", "typo": True},
                {"billable_metric_id": "bm-2", "charge_model": "percentage"},
            ],
        }
    )
    assert issues == {
        "charges": {
            "1": {
                "pay_in_advance": ["not_supported"],
                "prorated": ["not_supported"],
                "properties": ["invalid_amount"],
                "filters": {
                    "0": {"values": ["value_is_invalid"]},
                    "1": {"values": ["value_is_invalid"]},
                    "2": {"values": ["value_is_mandatory"], "properties": ["invalid_amount"]},
                },
            },
            "2": {
                "typo": ["unknown_field"],
                "billable_metric_id": ["value_is_mandatory"],
                "charge_model": ["value_is_invalid"],
            },
            "3": {"properties": ["invalid_value"]},
        }
    }


def test_graduated_percentage_needs_premium() -> None:
    charge = {"billable_metric_id": "bm-1", "charge_model": "graduated_percentage"}
    assert _issues({**BASE, "charges": [charge]}) == {
        "charges": {"0": {"charge_model": ["graduated_percentage_requires_premium_license"]}}
    }
    plan = _build({**BASE, "charges": [charge]}, premium=True)
    assert plan.charges[0].charge_model is ChargeModel.GRADUATED_PERCENTAGE


def test_charge_codes_default_to_metric_code_then_suffixes() -> None:
    charge = {"billable_metric_id": "bm-1", "charge_model": "standard"}
    plan = _build({**BASE, "charges": [charge, {**charge, "code": "llm_tokens_2"}, charge, charge]})
    assert [c.code for c in plan.charges] == [
        "llm_tokens",
        "llm_tokens_2",
        "llm_tokens_3",
        "llm_tokens_4",
    ]
    assert _issues({**BASE, "charges": [{**charge, "code": "x"}, {**charge, "code": "x"}]}) == {
        "charges": {"1": {"code": ["value_already_exist"]}}
    }


def test_referenced_metric_ids() -> None:
    charges = [
        {"billable_metric_id": "a"},
        {"billable_metric_id": "b"},
        {"billable_metric_id": "a"},
    ]
    assert referenced_metric_ids({"charges": [*charges, "junk", {"billable_metric_id": 3}]}) == [
        "a",
        "b",
    ]
    assert referenced_metric_ids({}) == []


def test_update_keeps_identity_and_charges_unless_replaced() -> None:
    charge = {"billable_metric_id": "bm-1", "charge_model": "standard"}
    created = _build({**BASE, "charges": [charge]})
    renamed = _build({"name": "Renamed"}, existing=created, id="ignored", now=T1)
    assert (renamed.id, renamed.created_at, renamed.name) == ("p-1", T0, "Renamed")
    assert renamed.charges == created.charges
    kept_id = created.charges[0].id
    replaced = _build(
        {
            "charges": [
                {"id": kept_id, **charge, "properties": {"amount": "2"}},
                {"billable_metric_id": "bm-2", "charge_model": "standard"},
            ]
        },
        existing=created,
        now=T1,
    )
    assert replaced.charges[0].id == kept_id
    assert replaced.charges[0].created_at == T0
    assert replaced.charges[0].properties == {"amount": "2"}
    assert [c.code for c in replaced.charges] == ["llm_tokens", "seats"]
    assert _issues({"charges": [{"id": "nope", **charge}]}, existing=created) == {
        "charges": {"0": {"id": ["value_is_invalid"]}}
    }
