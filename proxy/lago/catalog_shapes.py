"""Lago's JSON shapes for billable metrics and plans (reference/lago-semantics.md section 7).

Charge properties keep their numbers as JSON numbers (``"to_value": 1000``, ``0.1``): they are
read as ``Decimal`` to keep their text, so responses are encoded with decimals as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Response

from metering.formats import format_datetime
from metering.models import BillableMetric, Charge, ChargeFilter, Plan

__all__ = ["catalog_json", "charge_json", "metric_json", "plan_json"]

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def catalog_json(body: Any) -> Response[bytes]:
    """A 200 JSON response whose Decimals are JSON numbers (charge properties, trial period)."""
    return Response(_ENCODER.encode(body), status_code=200, media_type="application/json")


def metric_json(metric: BillableMetric) -> dict[str, Any]:
    """Lago's billable metric object (filters ordered by key, values sorted)."""
    return {
        "lago_id": metric.id,
        "name": metric.name,
        "code": metric.code,
        "description": metric.description,
        "aggregation_type": metric.aggregation_type.value,
        "weighted_interval": metric.weighted_interval,
        "recurring": metric.recurring,
        "rounding_function": (
            metric.rounding_function.value if metric.rounding_function is not None else None
        ),
        "rounding_precision": metric.rounding_precision,
        "created_at": format_datetime(metric.created_at),
        "field_name": metric.field_name,
        "expression": None,
        "filters": [
            {"key": f.key, "values": sorted(f.values)}
            for f in sorted(metric.filters, key=lambda f: f.key)
        ],
        "active_subscriptions_count": 0,
        "draft_invoices_count": 0,
        "plans_count": 0,
    }


def _filter_json(charge: Charge, charge_filter: ChargeFilter) -> dict[str, Any]:
    return {
        "lago_id": charge_filter.id,
        "charge_code": charge.code,
        "invoice_display_name": charge_filter.invoice_display_name,
        "properties": charge_filter.properties,
        "values": {key: list(values) for key, values in charge_filter.values.items()},
    }


def charge_json(charge: Charge, metric_codes: Mapping[str, str]) -> dict[str, Any]:
    """Lago's charge object; ``metric_codes`` maps metric lago ids to their codes."""
    return {
        "lago_id": charge.id,
        "lago_billable_metric_id": charge.billable_metric_id,
        "code": charge.code,
        "invoice_display_name": charge.invoice_display_name,
        "billable_metric_code": metric_codes.get(charge.billable_metric_id),
        "created_at": format_datetime(charge.created_at),
        "charge_model": charge.charge_model.value,
        "invoiceable": charge.invoiceable,
        "regroup_paid_fees": None,
        "pay_in_advance": charge.pay_in_advance,
        "prorated": charge.prorated,
        "min_amount_cents": charge.min_amount_cents,
        "accepts_target_wallet": False,
        "properties": charge.properties,
        "applied_pricing_unit": None,
        "lago_parent_id": None,
        "filters": [_filter_json(charge, f) for f in charge.filters],
        "taxes": [],
    }


def plan_json(plan: Plan, metric_codes: Mapping[str, str]) -> dict[str, Any]:
    """Lago's plan object with its charges and the lists tallygate keeps empty."""
    return {
        "lago_id": plan.id,
        "name": plan.name,
        "invoice_display_name": plan.invoice_display_name,
        "created_at": format_datetime(plan.created_at),
        "code": plan.code,
        "interval": plan.interval.value,
        "description": plan.description,
        "amount_cents": plan.amount_cents,
        "amount_currency": plan.amount_currency,
        "trial_period": plan.trial_period,
        "pay_in_advance": plan.pay_in_advance,
        "bill_charges_monthly": plan.bill_charges_monthly,
        "bill_fixed_charges_monthly": False,
        "customers_count": 0,
        "active_subscriptions_count": 0,
        "draft_invoices_count": 0,
        "parent_id": None,
        "pending_deletion": False,
        "charges": [charge_json(c, metric_codes) for c in plan.charges],
        "fixed_charges": [],
        "usage_thresholds": [],
        "applicable_usage_thresholds": [],
        "taxes": [],
        "entitlements": [],
    }
