"""Pure rules of billable metrics: every issue at once, defaults, updates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metering.api_metrics import build_metric, metric_issues
from metering.errors import ValidationFailed
from metering.models import AggregationType, MetricFilter, RoundingFunction

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 2, 1, tzinfo=UTC)


def _issues(raw: dict[str, object], **kwargs: bool) -> object:
    with pytest.raises(ValidationFailed) as raised:
        build_metric(raw, id="m", now=T0, **kwargs)
    return raised.value.issues


def test_sum_metric_with_filters_sorted_and_deduplicated() -> None:
    metric = build_metric(
        {
            "name": "LLM tokens",
            "code": "llm_tokens",
            "aggregation_type": "sum_agg",
            "field_name": "tokens",
            "filters": [
                {"key": "type", "values": ["output", "input", "output"]},
                {"key": "model", "values": ["gpt-4o", "gpt-4o-mini"]},
            ],
        },
        id="m-1",
        now=T0,
    )
    assert metric.id == "m-1"
    assert metric.created_at == T0
    assert metric.aggregation_type is AggregationType.SUM
    assert metric.recurring is False
    assert metric.filters == (
        MetricFilter(key="model", values=("gpt-4o", "gpt-4o-mini")),
        MetricFilter(key="type", values=("input", "output")),
    )


def test_every_issue_is_listed() -> None:
    assert _issues(
        {
            "aggregation_type": "max_agg",
            "recurring": True,
            "rounding_function": "up",
            "rounding_precision": "2",
            "filters": [{"key": "", "values": []}, {"key": "a", "values": ["x", 3]}],
            "typo": 1,
        },
        code_taken=True,
    ) == {
        "typo": ["unknown_field"],
        "name": ["value_is_mandatory"],
        "code": ["value_is_mandatory"],
        "field_name": ["value_is_mandatory"],
        "recurring": ["not_compatible_with_aggregation_type"],
        "rounding_function": ["value_is_invalid"],
        "rounding_precision": ["value_is_invalid"],
        "filters": {
            "0": {"key": ["value_is_mandatory"], "values": ["value_is_mandatory"]},
            "1": {"values": ["value_is_invalid"]},
        },
    }


@pytest.mark.parametrize("aggregation", ["count_agg", "max_agg", "latest_agg"])
def test_recurring_is_refused_for_count_max_latest(aggregation: str) -> None:
    raw = {"name": "n", "code": "c", "aggregation_type": aggregation, "field_name": "f"}
    assert metric_issues({**raw, "recurring": True}) == {
        "recurring": ["not_compatible_with_aggregation_type"]
    }
    assert metric_issues(raw) == {}


def test_unknown_and_custom_aggregations() -> None:
    base = {"name": "n", "code": "c", "field_name": "f"}
    assert metric_issues({**base, "aggregation_type": "avg_agg"}) == {
        "aggregation_type": ["value_is_invalid"]
    }
    assert metric_issues({**base, "aggregation_type": "custom_agg"}) == {
        "aggregation_type": ["not_supported"]
    }
    assert metric_issues({**base, "aggregation_type": "sum_agg", "expression": "x * 2"}) == {
        "expression": ["not_supported"]
    }


def test_code_taken_and_duplicate_filter_keys() -> None:
    assert _issues(
        {
            "name": "n",
            "code": "c",
            "aggregation_type": "count_agg",
            "filters": [{"key": "k", "values": ["a"]}, {"key": "k", "values": ["b"]}],
        },
        code_taken=True,
    ) == {"code": ["value_already_exist"], "filters": {"1": {"key": ["value_already_exist"]}}}


def test_count_forces_field_name_to_null_and_weighted_defaults_to_seconds() -> None:
    count = build_metric(
        {"name": "n", "code": "c", "aggregation_type": "count_agg", "field_name": "x"},
        id="m",
        now=T0,
    )
    assert count.field_name is None
    weighted = build_metric(
        {"name": "n", "code": "w", "aggregation_type": "weighted_sum_agg", "field_name": "gb"},
        id="m",
        now=T0,
    )
    assert weighted.weighted_interval == "seconds"
    assert metric_issues(
        {
            "name": "n",
            "code": "w",
            "aggregation_type": "weighted_sum_agg",
            "field_name": "gb",
            "weighted_interval": "hours",
        }
    ) == {"weighted_interval": ["value_is_invalid"]}


def test_update_overlays_given_fields_and_keeps_identity() -> None:
    created = build_metric(
        {
            "name": "n",
            "code": "c",
            "aggregation_type": "sum_agg",
            "field_name": "f",
            "filters": [{"key": "k", "values": ["a"]}],
        },
        id="m",
        now=T0,
    )
    updated = build_metric(
        {"name": "renamed", "rounding_function": "ceil", "rounding_precision": 2},
        id="other",
        now=T1,
        existing=created,
    )
    assert (updated.id, updated.created_at, updated.code) == ("m", T0, "c")
    assert updated.name == "renamed"
    assert updated.rounding_function is RoundingFunction.CEIL
    assert updated.rounding_precision == 2
    assert updated.filters == created.filters
    with pytest.raises(ValidationFailed) as raised:
        build_metric(
            {"aggregation_type": "count_agg", "recurring": True}, id="x", now=T1, existing=created
        )
    assert raised.value.issues == {"recurring": ["not_compatible_with_aggregation_type"]}
