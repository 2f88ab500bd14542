"""Lago's JSON shapes for metering results (reference/lago-semantics.md section 7).

Units are decimal strings (``"15250.0"``), amounts integer cents, datetimes ISO 8601 with
seconds; the shapes match what ``lago-python-client`` parses.
"""

from __future__ import annotations

from typing import Any

from metering.formats import format_date, format_datetime, format_units
from metering.usage import ChargeUsage, CustomerUsage, FilterUsage

__all__ = ["customer_usage_json"]


def _filter_json(usage: FilterUsage) -> dict[str, Any]:
    return {
        "units": format_units(usage.units),
        "total_aggregated_units": format_units(usage.total_aggregated_units),
        "events_count": usage.events_count,
        "amount_cents": usage.amount_cents,
        "pricing_unit_details": None,
        "invoice_display_name": usage.invoice_display_name,
        "values": (None if usage.values is None else {k: list(v) for k, v in usage.values.items()}),
        "presentation_breakdowns": [],
    }


def _charge_json(usage: ChargeUsage) -> dict[str, Any]:
    charge, metric = usage.charge, usage.metric
    return {
        "units": format_units(usage.units),
        "total_aggregated_units": format_units(usage.total_aggregated_units),
        "events_count": usage.events_count,
        "amount_cents": usage.amount_cents,
        "amount_currency": usage.amount_currency,
        "pricing_unit_details": None,
        "charge": {
            "lago_id": charge.id,
            "code": charge.code,
            "charge_model": str(charge.charge_model),
            "invoice_display_name": charge.invoice_display_name,
        },
        "billable_metric": {
            "lago_id": metric.id,
            "name": metric.name,
            "code": metric.code,
            "aggregation_type": str(metric.aggregation_type),
        },
        "filters": [_filter_json(f) for f in usage.filters],
        "grouped_usage": [],
        "presentation_breakdowns": [],
    }


def customer_usage_json(usage: CustomerUsage) -> dict[str, Any]:
    """The body of ``customer_usage`` (without the root key)."""
    return {
        "from_datetime": format_datetime(usage.from_datetime),
        "to_datetime": format_datetime(usage.to_datetime),
        "issuing_date": format_date(usage.issuing_date),
        "currency": usage.currency,
        "amount_cents": usage.amount_cents,
        "taxes_amount_cents": usage.taxes_amount_cents,
        "total_amount_cents": usage.total_amount_cents,
        "lago_invoice_id": None,
        "charges_usage": [_charge_json(c) for c in usage.charges_usage],
    }
