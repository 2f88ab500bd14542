"""Charge properties on save: defaults, dropping foreign keys, and validation listing every issue.

Codes follow Lago's ``app/services/charges/validators/*``:

- standard / package ``amount``: ``invalid_amount``; package ``package_size``:
  ``invalid_package_size``; ``free_units``: ``invalid_free_units``;
- graduated / volume: ``missing_graduated_ranges`` / ``missing_volume_ranges``, per range
  ``per_unit_amount`` and ``flat_amount``: ``invalid_amount``, bounds:
  ``invalid_graduated_ranges`` / ``invalid_volume_ranges``;
- percentage: ``rate``: ``invalid_rate``, ``fixed_amount``: ``invalid_fixed_amount``,
  ``free_units_per_events``: ``invalid_free_units_per_events``,
  ``free_units_per_total_aggregation``: ``invalid_free_units_per_total_aggregation``, with a
  premium licence the per-transaction bounds: ``invalid_amount`` and
  ``per_transaction_max_lower_than_per_transaction_min``; over ``latest_agg``:
  ``billable_metric: invalid_value``;
- graduated_percentage: ``missing_graduated_percentage_ranges``, ``flat_amount``:
  ``invalid_amount``, ``rate``: ``invalid_rate``, bounds: ``invalid_graduated_percentage_ranges``,
  ``billable_metric: invalid_value`` over ``latest_agg``; without premium the model itself is
  refused (``charge_model: graduated_percentage_requires_premium_license``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from metering.charge_models.common import is_number, parse_decimal
from metering.models import AggregationType, ChargeModel

__all__ = [
    "PropertyIssues",
    "default_properties",
    "filter_properties",
    "prepare_properties",
    "property_error_codes",
    "validate_charge_model",
    "validate_properties",
]

#: Field -> codes, in the order Lago's validator adds them (a code may repeat per range).
PropertyIssues = dict[str, list[str]]

_KEYS: dict[ChargeModel, tuple[str, ...]] = {
    ChargeModel.STANDARD: ("amount",),
    ChargeModel.PACKAGE: ("amount", "free_units", "package_size"),
    ChargeModel.GRADUATED: ("graduated_ranges",),
    ChargeModel.VOLUME: ("volume_ranges",),
    ChargeModel.PERCENTAGE: (
        "fixed_amount",
        "free_units_per_events",
        "free_units_per_total_aggregation",
        "per_transaction_max_amount",
        "per_transaction_min_amount",
        "rate",
    ),
    ChargeModel.GRADUATED_PERCENTAGE: ("graduated_percentage_ranges",),
}


def default_properties(model: ChargeModel) -> dict[str, Any]:
    """What Lago stores when a charge is created without properties (prices everything at 0)."""
    open_range: dict[str, Any] = {"from_value": 0, "to_value": None}
    defaults: dict[ChargeModel, dict[str, Any]] = {
        ChargeModel.STANDARD: {"amount": "0"},
        ChargeModel.PACKAGE: {"package_size": 1, "amount": "0", "free_units": 0},
        ChargeModel.GRADUATED: {
            "graduated_ranges": [{**open_range, "per_unit_amount": "0", "flat_amount": "0"}]
        },
        ChargeModel.VOLUME: {
            "volume_ranges": [{**open_range, "per_unit_amount": "0", "flat_amount": "0"}]
        },
        ChargeModel.PERCENTAGE: {"rate": "0"},
        ChargeModel.GRADUATED_PERCENTAGE: {
            "graduated_percentage_ranges": [
                {**open_range, "rate": "0", "fixed_amount": "0", "flat_amount": "0"}
            ]
        },
    }
    return defaults[model]


def filter_properties(model: ChargeModel, properties: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys the model uses (Lago drops the others on save)."""
    return {key: copy.deepcopy(properties[key]) for key in _KEYS[model] if key in properties}


def prepare_properties(
    model: ChargeModel, properties: Mapping[str, Any] | None, *, use_defaults: bool = True
) -> dict[str, Any]:
    """Properties as stored: the model's defaults when none (or ``{}``) are given, filtered.

    Charges get defaults (``use_defaults``); Lago gives charge filters none.
    """
    if not properties and use_defaults:
        return default_properties(model)
    return filter_properties(model, properties or {})


def _is_amount(value: Any) -> bool:
    # Lago only accepts JSON strings, to never read a float, that parse as a decimal >= 0.
    if not isinstance(value, str):
        return False
    parsed = parse_decimal(value)
    return parsed is not None and parsed >= 0


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


class _Issues:
    def __init__(self) -> None:
        self.found: PropertyIssues = {}

    def add(self, field: str, code: str) -> None:
        self.found.setdefault(field, []).append(code)

    def amount(self, value: Any, field: str, code: str = "invalid_amount") -> None:
        if not _is_amount(value):
            self.add(field, code)


def _number(value: Any) -> Decimal | None:
    # Bounds must be JSON numbers: Lago compares them with the units as they are stored.
    return parse_decimal(value) if is_number(value) else None


def _bounds_ok(item: Mapping[str, Any], index: int, count: int, next_from: Decimal) -> bool:
    start, end = _number(item.get("from_value")), item.get("to_value")
    # The first tier starts at 0 (the spec's rule; Lago's code would also take 1).
    allowed = (next_from,) if index == 0 else (next_from, next_from + 1)
    if start is None or start not in allowed:
        return False
    last = index == count - 1
    if last:
        return end is None
    end_value = _number(end)
    return end_value is not None and end_value > start


def _ranges(
    issues: _Issues, raw: Any, field: str, amount_fields: Sequence[tuple[str, str]], step: int
) -> None:
    """One ranges property: present, each range's amounts, bounds chained from 0."""
    if not raw or not isinstance(raw, Sequence) or isinstance(raw, str):
        issues.add(field, f"missing_{field}")
        return
    next_from = Decimal(0)
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            issues.add(field, f"invalid_{field}")
            continue
        for name, code in amount_fields:
            issues.amount(item.get(name), name, code)
        if not _bounds_ok(item, index, len(raw), next_from):
            issues.add(field, f"invalid_{field}")
        # Graduated tiers start at the previous end (or end + 1); volume ones at end + 1 (or + 2).
        next_from = (_number(item.get("to_value")) or Decimal(0)) + step


def _percentage(issues: _Issues, props: Mapping[str, Any], premium: bool) -> None:
    issues.amount(props.get("rate"), "rate", "invalid_rate")
    if props.get("fixed_amount") is not None:
        issues.amount(props.get("fixed_amount"), "fixed_amount", "invalid_fixed_amount")
    fpe = props.get("free_units_per_events")
    if fpe is not None and not _is_count(fpe, 1):
        issues.add("free_units_per_events", "invalid_free_units_per_events")
    fpt = props.get("free_units_per_total_aggregation")
    if fpt is not None:
        issues.amount(
            fpt, "free_units_per_total_aggregation", "invalid_free_units_per_total_aggregation"
        )
    if not premium:
        return
    bounds = []
    for name in ("per_transaction_min_amount", "per_transaction_max_amount"):
        value = props.get(name)
        if _present(value):
            issues.amount(value, name)
        bounds.append(parse_decimal(value) if _is_amount(value) else None)
    low, high = bounds
    if low is not None and high is not None and low > high:
        issues.add(
            "per_transaction_max_amount", "per_transaction_max_lower_than_per_transaction_min"
        )


def validate_properties(
    model: ChargeModel,
    properties: Mapping[str, Any],
    *,
    aggregation_type: AggregationType | None = None,
    premium: bool = False,
) -> PropertyIssues:
    """Every issue of a (filtered) properties object for ``model``; empty when valid."""
    issues = _Issues()
    latest = aggregation_type is AggregationType.LATEST
    if model in (ChargeModel.PERCENTAGE, ChargeModel.GRADUATED_PERCENTAGE) and latest:
        issues.add("billable_metric", "invalid_value")
    if model is ChargeModel.STANDARD:
        issues.amount(properties.get("amount"), "amount")
    elif model is ChargeModel.PACKAGE:
        issues.amount(properties.get("amount"), "amount")
        if not _is_count(properties.get("free_units"), 0):
            issues.add("free_units", "invalid_free_units")
        if not _is_count(properties.get("package_size"), 1):
            issues.add("package_size", "invalid_package_size")
    elif model in (ChargeModel.GRADUATED, ChargeModel.VOLUME):
        field = "graduated_ranges" if model is ChargeModel.GRADUATED else "volume_ranges"
        amounts = (("per_unit_amount", "invalid_amount"), ("flat_amount", "invalid_amount"))
        step = 0 if model is ChargeModel.GRADUATED else 1
        _ranges(issues, properties.get(field), field, amounts, step)
    elif model is ChargeModel.PERCENTAGE:
        _percentage(issues, properties, premium)
    else:
        amounts = (("flat_amount", "invalid_amount"), ("rate", "invalid_rate"))
        field = "graduated_percentage_ranges"
        _ranges(issues, properties.get(field), field, amounts, 0)
    return issues.found


def validate_charge_model(model: ChargeModel, *, premium: bool) -> PropertyIssues:
    """Issues of the model choice itself: graduated_percentage needs a premium licence."""
    if model is ChargeModel.GRADUATED_PERCENTAGE and not premium:
        return {"charge_model": ["graduated_percentage_requires_premium_license"]}
    return {}


def property_error_codes(issues: PropertyIssues) -> list[str]:
    """The codes flattened for Lago's ``{"properties": [codes]}`` answer, each once, in order."""
    codes: list[str] = []
    for field_codes in issues.values():
        codes.extend(code for code in field_codes if code not in codes)
    return codes
