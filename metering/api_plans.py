"""Lago's plan and charge rules (reference/lago-semantics.md sections 2, 3 and 7), without HTTP.

:func:`build_plan` validates a ``plan`` body (create, or update over an existing plan) against
the billable metrics its charges reference and returns the record, or raises
:class:`ValidationFailed` listing **every** issue. No I/O, no clock: ids come from ``new_id``.

Issue shape (Lago's ``{field: [codes]}``), nested by index for lists::

    {"interval": ["value_is_invalid"],
     "charges": {"0": {"properties": ["invalid_amount"],
                       "filters": {"2": {"values": ["value_is_invalid"]}}}}}

Charge ``properties`` codes are flattened with :func:`property_error_codes`, as Lago answers
``{"properties": [codes]}``; ``charge_model`` may carry
``graduated_percentage_requires_premium_license``.

Codes used: ``value_is_mandatory``, ``value_is_invalid``, ``value_already_exist``,
``unknown_field`` (a key no client sends), ``not_supported`` (Lago features tallygate leaves
out: pay-in-advance or prorated charges, fixed charges, minimum commitments, usage thresholds,
taxes, metadata, pricing units, target wallets, regrouped paid fees), and the charge property
codes of :mod:`metering.charge_models.validation`.

An unknown ``billable_metric_id`` is not a validation issue: the caller looks up
:func:`referenced_metric_ids` first and answers 404 ``billable_metrics_not_found``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from metering.api_customers import known_currency
from metering.charge_models.validation import (
    prepare_properties,
    property_error_codes,
    validate_charge_model,
    validate_properties,
)
from metering.errors import IssueMap, ValidationFailed, add_issue
from metering.models import (
    ALL_FILTER_VALUES,
    BillableMetric,
    Charge,
    ChargeFilter,
    ChargeModel,
    Interval,
    Plan,
)

__all__ = [
    "CHARGE_FIELDS",
    "CHARGE_FILTER_FIELDS",
    "PLAN_FIELDS",
    "build_plan",
    "referenced_metric_ids",
]

#: Every key ``lago-python-client``'s ``Plan`` can send.
PLAN_FIELDS = frozenset(
    {
        "name",
        "invoice_display_name",
        "code",
        "interval",
        "description",
        "amount_cents",
        "amount_currency",
        "trial_period",
        "pay_in_advance",
        "bill_charges_monthly",
        "bill_fixed_charges_monthly",
        "charges",
        "fixed_charges",
        "minimum_commitment",
        "usage_thresholds",
        "tax_codes",
        "cascade_updates",
        "metadata",
    }
)
#: Every key of the client's ``Charge``.
CHARGE_FIELDS = frozenset(
    {
        "id",
        "billable_metric_id",
        "code",
        "charge_model",
        "pay_in_advance",
        "prorated",
        "invoiceable",
        "regroup_paid_fees",
        "invoice_display_name",
        "min_amount_cents",
        "properties",
        "filters",
        "tax_codes",
        "applied_pricing_unit",
        "accepts_target_wallet",
        "cascade_updates",
    }
)
#: Every key of the client's ``ChargeFilter``.
CHARGE_FILTER_FIELDS = frozenset(
    {"invoice_display_name", "properties", "values", "cascade_updates"}
)

NewId = Callable[[], str]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_int(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _unknown(issues: IssueMap, raw: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in sorted(set(raw) - allowed):
        add_issue(issues, key, "unknown_field")


def _empty(value: Any) -> bool:
    """Null, false or an empty collection: nothing that asks for an out-of-scope feature."""
    return value is None or value is False or (isinstance(value, list | dict) and not value)


def _check_optional(issues: IssueMap, raw: Mapping[str, Any], field: str, kind: type) -> None:
    value = raw.get(field)
    if value is not None and (not isinstance(value, kind) or (kind is int and value is True)):
        add_issue(issues, field, "value_is_invalid")


def referenced_metric_ids(raw: Mapping[str, Any]) -> list[str]:
    """The distinct ``billable_metric_id`` strings the body's charges name, in order."""
    charges = raw.get("charges")
    found: list[str] = []
    if isinstance(charges, list):
        for charge in charges:
            if isinstance(charge, Mapping):
                metric_id = charge.get("billable_metric_id")
                if isinstance(metric_id, str) and metric_id and metric_id not in found:
                    found.append(metric_id)
    return found


def _plan_issues(raw: Mapping[str, Any], *, code_taken: bool) -> IssueMap:
    issues: IssueMap = {}
    _unknown(issues, raw, PLAN_FIELDS)
    if not _text(raw.get("name")):
        add_issue(issues, "name", "value_is_mandatory")
    if not _text(raw.get("code")):
        add_issue(issues, "code", "value_is_mandatory")
    elif code_taken:
        add_issue(issues, "code", "value_already_exist")
    if raw.get("interval") not in {i.value for i in Interval}:
        add_issue(issues, "interval", "value_is_invalid")
    amount = raw.get("amount_cents")
    if amount is None:
        add_issue(issues, "amount_cents", "value_is_mandatory")
    elif not _is_int(amount):
        add_issue(issues, "amount_cents", "value_is_invalid")
    currency = raw.get("amount_currency")
    if currency is None:
        add_issue(issues, "amount_currency", "value_is_mandatory")
    elif not (isinstance(currency, str) and known_currency(currency)):
        add_issue(issues, "amount_currency", "value_is_invalid")
    trial = raw.get("trial_period")
    if trial is not None and not (
        isinstance(trial, int | float | Decimal) and not isinstance(trial, bool) and trial >= 0
    ):
        add_issue(issues, "trial_period", "value_is_invalid")
    for field in ("pay_in_advance", "bill_charges_monthly", "cascade_updates"):
        _check_optional(issues, raw, field, bool)
    for field in ("description", "invoice_display_name"):
        _check_optional(issues, raw, field, str)
    for field in (
        "bill_fixed_charges_monthly",
        "fixed_charges",
        "minimum_commitment",
        "usage_thresholds",
        "tax_codes",
        "metadata",
    ):
        if not _empty(raw.get(field)):
            add_issue(issues, field, "not_supported")
    charges = raw.get("charges")
    if charges is not None and not isinstance(charges, list):
        add_issue(issues, "charges", "value_is_invalid")
    return issues


def _filter_values(
    raw: Any, metric: BillableMetric
) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """Codes for a charge filter's ``values`` and the values map when valid."""
    if not isinstance(raw, Mapping) or not raw:
        return ["value_is_mandatory"], {}
    allowed = {f.key: set(f.values) for f in metric.filters}
    values: dict[str, tuple[str, ...]] = {}
    for key, listed in raw.items():
        if key not in allowed or not isinstance(listed, list) or not listed:
            return ["value_is_invalid"], {}
        if not all(isinstance(v, str) for v in listed):
            return ["value_is_invalid"], {}
        if listed != [ALL_FILTER_VALUES] and not set(listed) <= allowed[key]:
            return ["value_is_invalid"], {}
        values[key] = tuple(listed)
    return [], values


def _charge_filters(
    raw: Any,
    *,
    metric: BillableMetric | None,
    model: ChargeModel | None,
    premium: bool,
    now: datetime,
    new_id: NewId,
) -> tuple[IssueMap, list[ChargeFilter]]:
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        return {"filters": ["value_is_invalid"]}, []
    nested: dict[str, IssueMap] = {}
    built: list[ChargeFilter] = []
    for index, item in enumerate(raw):
        here: IssueMap = {}
        if not isinstance(item, Mapping):
            nested[str(index)] = {"filter": ["value_is_invalid"]}
            continue
        _unknown(here, item, CHARGE_FILTER_FIELDS)
        _check_optional(here, item, "invoice_display_name", str)
        _check_optional(here, item, "cascade_updates", bool)
        values: dict[str, tuple[str, ...]] = {}
        if metric is not None:
            codes, values = _filter_values(item.get("values"), metric)
            if codes:
                here["values"] = codes
        props = item.get("properties")
        prepared: dict[str, Any] = {}
        if props is not None and not isinstance(props, Mapping):
            add_issue(here, "properties", "value_is_invalid")
        elif model is not None and metric is not None:
            prepared = prepare_properties(model, props, use_defaults=False)
            found = validate_properties(
                model, prepared, aggregation_type=metric.aggregation_type, premium=premium
            )
            if found:
                here["properties"] = property_error_codes(found)
        if here:
            nested[str(index)] = here
            continue
        built.append(
            ChargeFilter(
                id=new_id(),
                values=values,
                properties=prepared,
                created_at=now,
                invoice_display_name=item.get("invoice_display_name"),
            )
        )
    if nested:
        return {"filters": nested}, []
    return {}, built


def _charge(
    raw: Mapping[str, Any],
    *,
    metrics: Mapping[str, BillableMetric],
    existing: Mapping[str, Charge],
    premium: bool,
    now: datetime,
    new_id: NewId,
) -> tuple[IssueMap, Charge | None]:
    """Issues of one charge (its ``code`` still unassigned when absent) and the charge."""
    issues: IssueMap = {}
    _unknown(issues, raw, CHARGE_FIELDS)
    metric_id = raw.get("billable_metric_id")
    metric = metrics.get(metric_id) if isinstance(metric_id, str) else None
    if not _text(metric_id):
        add_issue(issues, "billable_metric_id", "value_is_mandatory")
    model: ChargeModel | None = None
    raw_model = raw.get("charge_model")
    if isinstance(raw_model, str) and raw_model in {m.value for m in ChargeModel}:
        model = ChargeModel(raw_model)
    else:
        add_issue(issues, "charge_model", "value_is_invalid")
    if model is not None:
        for field, codes in validate_charge_model(model, premium=premium).items():
            issues.setdefault(field, []).extend(codes)
    charge_id = raw.get("id")
    previous = existing.get(charge_id) if isinstance(charge_id, str) else None
    if charge_id is not None and previous is None:
        add_issue(issues, "id", "value_is_invalid")
    code = raw.get("code")
    if code is not None and not _text(code):
        add_issue(issues, "code", "value_is_invalid")
    for field in ("pay_in_advance", "prorated", "accepts_target_wallet"):
        value = raw.get(field)
        if value is True:
            add_issue(issues, field, "not_supported")
        else:
            _check_optional(issues, raw, field, bool)
    for field in ("regroup_paid_fees", "tax_codes", "applied_pricing_unit"):
        if not _empty(raw.get(field)):
            add_issue(issues, field, "not_supported")
    for field, kind in (
        ("invoiceable", bool),
        ("invoice_display_name", str),
        ("cascade_updates", bool),
    ):
        _check_optional(issues, raw, field, kind)
    min_amount = raw.get("min_amount_cents")
    if min_amount is not None and not _is_int(min_amount):
        add_issue(issues, "min_amount_cents", "value_is_invalid")
    props = raw.get("properties")
    prepared: dict[str, Any] = {}
    if props is not None and not isinstance(props, Mapping):
        add_issue(issues, "properties", "value_is_invalid")
    elif model is not None and metric is not None:
        prepared = prepare_properties(model, props)
        found = validate_properties(
            model, prepared, aggregation_type=metric.aggregation_type, premium=premium
        )
        if found:
            issues.setdefault("properties", []).extend(property_error_codes(found))
    filter_issues, filters = _charge_filters(
        raw.get("filters"), metric=metric, model=model, premium=premium, now=now, new_id=new_id
    )
    issues.update(filter_issues)
    if issues or metric is None or model is None:
        return issues, None
    if previous is not None and raw.get("filters") is None:
        filters = list(previous.filters)
    return {}, Charge(
        id=previous.id if previous is not None else new_id(),
        code=code or (previous.code if previous is not None else ""),
        billable_metric_id=metric.id,
        charge_model=model,
        properties=prepared,
        created_at=previous.created_at if previous is not None else now,
        filters=tuple(filters),
        invoice_display_name=raw.get("invoice_display_name"),
        invoiceable=raw.get("invoiceable", True) is not False,
        min_amount_cents=min_amount or 0,
    )


def _assign_codes(
    charges: list[Charge], metrics: Mapping[str, BillableMetric]
) -> tuple[IssueMap, list[Charge]]:
    """Explicit codes must be unique; the others default to the metric code, then ``_2``..."""
    nested: dict[str, IssueMap] = {}
    used: set[str] = set()
    for index, charge in enumerate(charges):
        if charge.code:
            if charge.code in used:
                nested[str(index)] = {"code": ["value_already_exist"]}
            used.add(charge.code)
    if nested:
        return {"charges": nested}, []
    assigned: list[Charge] = []
    for charge in charges:
        code = charge.code
        if not code:
            base = metrics[charge.billable_metric_id].code
            code, suffix = base, 2
            while code in used:
                code, suffix = f"{base}_{suffix}", suffix + 1
            used.add(code)
        assigned.append(msgspec.structs.replace(charge, code=code))
    return {}, assigned


def _as_raw(plan: Plan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "code": plan.code,
        "interval": plan.interval.value,
        "amount_cents": plan.amount_cents,
        "amount_currency": plan.amount_currency,
        "pay_in_advance": plan.pay_in_advance,
        "description": plan.description,
        "invoice_display_name": plan.invoice_display_name,
        "trial_period": plan.trial_period,
        "bill_charges_monthly": plan.bill_charges_monthly,
    }


def build_plan(
    raw: Mapping[str, Any],
    *,
    metrics: Mapping[str, BillableMetric],
    id: str,
    now: datetime,
    new_id: NewId,
    code_taken: bool = False,
    premium: bool = False,
    existing: Plan | None = None,
) -> Plan:
    """The plan described by ``raw`` (an update overlays the given keys on ``existing``).

    ``metrics`` maps lago ids to every metric the charges reference (see
    :func:`referenced_metric_ids`); ``code_taken``: another plan already has the code. On an
    update, a given ``charges`` list replaces the charges (a charge with the ``id`` of an
    existing one keeps its identity); an absent one keeps them. Raises ValidationFailed.
    """
    merged = {**_as_raw(existing), **raw} if existing is not None else dict(raw)
    issues = _plan_issues(merged, code_taken=code_taken)
    raw_charges = raw.get("charges")
    charges: list[Charge] = list(existing.charges) if existing is not None else []
    if isinstance(raw_charges, list):
        previous = {c.id: c for c in existing.charges} if existing is not None else {}
        nested: dict[str, IssueMap] = {}
        charges = []
        for index, item in enumerate(raw_charges):
            if not isinstance(item, Mapping):
                nested[str(index)] = {"charge": ["value_is_invalid"]}
                continue
            charge_issues, charge = _charge(
                item, metrics=metrics, existing=previous, premium=premium, now=now, new_id=new_id
            )
            if charge_issues:
                nested[str(index)] = charge_issues
            elif charge is not None:
                charges.append(charge)
        if nested:
            issues["charges"] = nested
        else:
            code_issues, charges = _assign_codes(charges, metrics)
            issues.update(code_issues)
    if issues:
        raise ValidationFailed(issues)
    trial = merged.get("trial_period")
    return Plan(
        id=existing.id if existing is not None else id,
        code=merged["code"],
        name=merged["name"],
        interval=Interval(merged["interval"]),
        amount_cents=merged["amount_cents"],
        amount_currency=merged["amount_currency"],
        created_at=existing.created_at if existing is not None else now,
        pay_in_advance=bool(merged.get("pay_in_advance")),
        description=merged.get("description"),
        invoice_display_name=merged.get("invoice_display_name"),
        trial_period=Decimal(str(trial)) if trial is not None else None,
        bill_charges_monthly=merged.get("bill_charges_monthly"),
        charges=tuple(charges),
    )
