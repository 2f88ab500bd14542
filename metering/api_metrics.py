"""Lago's billable-metric rules (reference/lago-semantics.md sections 1 and 7), no HTTP, no clock.

:func:`build_metric` validates a ``billable_metric`` body (create, or update over an existing
metric) and returns the record, or raises :class:`ValidationFailed` listing **every** issue.

Issue shape (Lago's ``{field: [codes]}``): top-level fields map to code lists; problems of one
metric filter are nested by its index, e.g.
``{"filters": {"1": {"values": ["value_is_mandatory"]}}}``.

Codes used: ``value_is_mandatory``, ``value_is_invalid``, ``value_already_exist``,
``not_compatible_with_aggregation_type``, ``unknown_field`` (a key no client sends) and
``not_supported`` (Lago features tallygate leaves out: ``custom_agg``, ``expression``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from metering.errors import IssueMap, ValidationFailed, add_issue
from metering.models import AggregationType, BillableMetric, MetricFilter, RoundingFunction

__all__ = ["METRIC_FIELDS", "build_metric", "merged_input", "metric_issues"]

#: Every key ``lago-python-client``'s ``BillableMetric`` can send.
METRIC_FIELDS = frozenset(
    {
        "name",
        "code",
        "description",
        "recurring",
        "rounding_function",
        "rounding_precision",
        "aggregation_type",
        "weighted_interval",
        "expression",
        "field_name",
        "filters",
    }
)
_NOT_RECURRING = frozenset({AggregationType.COUNT, AggregationType.MAX, AggregationType.LATEST})
_WEIGHTED_INTERVALS = frozenset({"seconds"})


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _filter_issues(raw: Any) -> tuple[IssueMap, list[MetricFilter]]:
    """Issues of the ``filters`` list (nested by index) and the filters it holds, ordered by key."""
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        return {"filters": ["value_is_invalid"]}, []
    nested: dict[str, IssueMap] = {}
    found: list[MetricFilter] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        here: IssueMap = {}
        if not isinstance(item, Mapping):
            nested[str(index)] = {"filter": ["value_is_invalid"]}
            continue
        for key in sorted(set(item) - {"key", "values"}):
            add_issue(here, key, "unknown_field")
        key = item.get("key")
        if not _text(key):
            add_issue(here, "key", "value_is_mandatory")
        elif key in seen:
            add_issue(here, "key", "value_already_exist")
        values = item.get("values")
        if not isinstance(values, list) or not values:
            add_issue(here, "values", "value_is_mandatory")
        elif not all(isinstance(v, str) and v != "" for v in values):
            add_issue(here, "values", "value_is_invalid")
        if here:
            nested[str(index)] = here
            continue
        assert isinstance(key, str)
        assert isinstance(values, list)
        seen.add(key)
        # Lago drops duplicate values; responses list them sorted.
        found.append(MetricFilter(key=key, values=tuple(sorted(set(values)))))
    if nested:
        return {"filters": nested}, []
    return {}, sorted(found, key=lambda f: f.key)


def metric_issues(raw: Mapping[str, Any], *, code_taken: bool = False) -> IssueMap:
    """Every problem of a complete metric input (an update already merged over the record)."""
    issues: IssueMap = {}
    for key in sorted(set(raw) - METRIC_FIELDS):
        add_issue(issues, key, "unknown_field")
    if not _text(raw.get("name")):
        add_issue(issues, "name", "value_is_mandatory")
    if not _text(raw.get("code")):
        add_issue(issues, "code", "value_is_mandatory")
    elif code_taken:
        add_issue(issues, "code", "value_already_exist")
    if not _optional_text(raw.get("description")):
        add_issue(issues, "description", "value_is_invalid")
    aggregation = _aggregation(raw.get("aggregation_type"))
    if aggregation is None:
        code = (
            "not_supported" if raw.get("aggregation_type") == "custom_agg" else "value_is_invalid"
        )
        add_issue(issues, "aggregation_type", code)
    field_name = raw.get("field_name")
    if aggregation is not AggregationType.COUNT and aggregation is not None:
        if not _text(field_name):
            add_issue(issues, "field_name", "value_is_mandatory")
    elif not _optional_text(field_name):
        add_issue(issues, "field_name", "value_is_invalid")
    recurring = raw.get("recurring")
    if recurring is not None and not isinstance(recurring, bool):
        add_issue(issues, "recurring", "value_is_invalid")
    elif recurring and aggregation in _NOT_RECURRING:
        add_issue(issues, "recurring", "not_compatible_with_aggregation_type")
    weighted = raw.get("weighted_interval")
    if aggregation is AggregationType.WEIGHTED_SUM and weighted not in (None, *_WEIGHTED_INTERVALS):
        add_issue(issues, "weighted_interval", "value_is_invalid")
    rounding = raw.get("rounding_function")
    if rounding is not None and rounding not in {r.value for r in RoundingFunction}:
        add_issue(issues, "rounding_function", "value_is_invalid")
    precision = raw.get("rounding_precision")
    if precision is not None and (not isinstance(precision, int) or isinstance(precision, bool)):
        add_issue(issues, "rounding_precision", "value_is_invalid")
    if raw.get("expression") not in (None, ""):
        add_issue(issues, "expression", "not_supported")
    filter_issues, _ = _filter_issues(raw.get("filters"))
    issues.update(filter_issues)
    return issues


def _aggregation(value: Any) -> AggregationType | None:
    try:
        return AggregationType(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _as_raw(metric: BillableMetric) -> dict[str, Any]:
    return {
        "name": metric.name,
        "code": metric.code,
        "description": metric.description,
        "aggregation_type": metric.aggregation_type.value,
        "field_name": metric.field_name,
        "recurring": metric.recurring,
        "weighted_interval": metric.weighted_interval,
        "rounding_function": metric.rounding_function,
        "rounding_precision": metric.rounding_precision,
        "filters": [{"key": f.key, "values": list(f.values)} for f in metric.filters],
    }


def merged_input(raw: Mapping[str, Any], existing: BillableMetric | None) -> dict[str, Any]:
    """The input to validate: an update overlays the given keys on the existing metric."""
    if existing is None:
        return dict(raw)
    return {**_as_raw(existing), **raw}


def build_metric(
    raw: Mapping[str, Any],
    *,
    id: str,
    now: datetime,
    code_taken: bool = False,
    existing: BillableMetric | None = None,
) -> BillableMetric:
    """The metric described by ``raw`` (over ``existing`` for an update, keeping its identity).

    ``code_taken``: another metric already has the requested code. Raises ValidationFailed.
    """
    merged = merged_input(raw, existing)
    issues = metric_issues(merged, code_taken=code_taken)
    if issues:
        raise ValidationFailed(issues)
    aggregation = AggregationType(merged["aggregation_type"])
    _, filters = _filter_issues(merged.get("filters"))
    rounding = merged.get("rounding_function")
    weighted = None
    if aggregation is AggregationType.WEIGHTED_SUM:
        weighted = merged.get("weighted_interval") or "seconds"
    return BillableMetric(
        id=existing.id if existing is not None else id,
        code=merged["code"],
        name=merged["name"],
        aggregation_type=aggregation,
        created_at=existing.created_at if existing is not None else now,
        description=merged.get("description"),
        # Lago forces field_name to null for count_agg.
        field_name=None if aggregation is AggregationType.COUNT else merged["field_name"],
        recurring=bool(merged.get("recurring")),
        weighted_interval=weighted,
        rounding_function=RoundingFunction(rounding) if rounding is not None else None,
        rounding_precision=merged.get("rounding_precision"),
        filters=tuple(filters),
    )
