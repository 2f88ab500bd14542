"""Charge properties on save: defaults, dropped keys, and Lago's validation codes."""

from __future__ import annotations

from typing import Any

import pytest

from metering.charge_models.validation import (
    default_properties,
    filter_properties,
    prepare_properties,
    property_error_codes,
    validate_charge_model,
    validate_properties,
)
from metering.models import AggregationType, ChargeModel

M = ChargeModel


def _range(start: Any, end: Any, unit: Any = "1", flat: Any = "0") -> dict[str, Any]:
    return {"from_value": start, "to_value": end, "per_unit_amount": unit, "flat_amount": flat}


class TestDefaultsAndFiltering:
    @pytest.mark.parametrize("model", list(ChargeModel))
    def test_defaults_are_valid_and_price_zero(self, model: ChargeModel) -> None:
        props = prepare_properties(model, None)
        assert props == default_properties(model)
        assert validate_properties(model, props, premium=True) == {}

    def test_defaults_per_model(self) -> None:
        assert default_properties(M.STANDARD) == {"amount": "0"}
        assert default_properties(M.PACKAGE) == {"package_size": 1, "amount": "0", "free_units": 0}
        assert default_properties(M.PERCENTAGE) == {"rate": "0"}
        assert default_properties(M.GRADUATED) == {"graduated_ranges": [_range(0, None, "0", "0")]}
        assert default_properties(M.VOLUME) == {"volume_ranges": [_range(0, None, "0", "0")]}
        tier = default_properties(M.GRADUATED_PERCENTAGE)["graduated_percentage_ranges"][0]
        assert (tier["from_value"], tier["to_value"], tier["rate"]) == (0, None, "0")

    def test_empty_properties_get_defaults_but_filters_do_not(self) -> None:
        assert prepare_properties(M.STANDARD, {}) == {"amount": "0"}
        assert prepare_properties(M.STANDARD, {}, use_defaults=False) == {}

    def test_foreign_keys_are_dropped(self) -> None:
        given = {"amount": "1", "package_size": 10, "rate": "3", "graduated_ranges": []}
        assert filter_properties(M.STANDARD, given) == {"amount": "1"}
        assert filter_properties(M.PACKAGE, given) == {"amount": "1", "package_size": 10}
        assert filter_properties(M.PERCENTAGE, given) == {"rate": "3"}
        assert prepare_properties(M.VOLUME, given) == {}


@pytest.mark.parametrize(
    "amount", ["0", "0.03", "12", "1e3", " 5 ", "-0"], ids=lambda a: f"ok:{a!r}"
)
def test_valid_amounts(amount: str) -> None:
    assert validate_properties(M.STANDARD, {"amount": amount}) == {}


@pytest.mark.parametrize("amount", [None, 3, 0.5, "-1", "abc", "", "NaN", "Infinity", True])
def test_invalid_amounts(amount: Any) -> None:
    assert validate_properties(M.STANDARD, {"amount": amount}) == {"amount": ["invalid_amount"]}


class TestPackage:
    def test_every_issue_is_listed(self) -> None:
        issues = validate_properties(M.PACKAGE, {"amount": 1, "package_size": 0, "free_units": -1})
        assert issues == {
            "amount": ["invalid_amount"],
            "free_units": ["invalid_free_units"],
            "package_size": ["invalid_package_size"],
        }

    @pytest.mark.parametrize("value", [None, "10", 10.0, True])
    def test_sizes_must_be_json_integers(self, value: Any) -> None:
        issues = validate_properties(
            M.PACKAGE, {"amount": "1", "package_size": value, "free_units": value}
        )
        assert issues == {
            "free_units": ["invalid_free_units"],
            "package_size": ["invalid_package_size"],
        }


class TestRanges:
    @pytest.mark.parametrize(
        "ranges",
        [
            [_range(0, None)],
            [_range(0, 10), _range(11, None)],
            [_range(0, 10), _range(10, None)],  # graduated: next from = previous to (or + 1)
            [_range(0, "0.1"), _range("0.1", 1), _range(1, None)],
            [_range(0, 0.1), _range(0.1, 1), _range(1, None)],
        ],
    )
    def test_valid_graduated(self, ranges: list[dict[str, Any]]) -> None:
        ranges = [
            {**r, "from_value": _num(r["from_value"]), "to_value": _num(r["to_value"])}
            for r in ranges
        ]
        assert validate_properties(M.GRADUATED, {"graduated_ranges": ranges}) == {}

    @pytest.mark.parametrize(
        "ranges",
        [
            [_range(1, None)],  # must start at 0
            [_range(0, 10)],  # the last range is open
            [_range(0, None), _range(1, None)],  # only the last range is open
            [_range(0, 10), _range(12, None)],  # a gap
            [_range(0, 10), _range(5, None)],  # an overlap
            [_range(0, 0), _range(1, None)],  # to > from
            [_range("0", None)],  # bounds are JSON numbers
        ],
    )
    def test_invalid_graduated(self, ranges: list[dict[str, Any]]) -> None:
        issues = validate_properties(M.GRADUATED, {"graduated_ranges": ranges})
        assert set(issues) == {"graduated_ranges"}
        assert set(issues["graduated_ranges"]) == {"invalid_graduated_ranges"}

    def test_volume_ranges_start_after_the_previous_end(self) -> None:
        ok = [_range(0, 10), _range(11, 100), _range(102, None)]
        assert validate_properties(M.VOLUME, {"volume_ranges": ok}) == {}
        touching = [_range(0, 10), _range(10, None)]
        assert validate_properties(M.VOLUME, {"volume_ranges": touching}) == {
            "volume_ranges": ["invalid_volume_ranges"]
        }

    @pytest.mark.parametrize("model", [M.GRADUATED, M.VOLUME, M.GRADUATED_PERCENTAGE])
    @pytest.mark.parametrize("ranges", [None, [], "x"])
    def test_missing_ranges(self, model: ChargeModel, ranges: Any) -> None:
        field = f"{model.value}_ranges"
        issues = validate_properties(model, {field: ranges})
        assert issues == {field: [f"missing_{field}"]}

    def test_amounts_and_bounds_are_all_reported(self) -> None:
        ranges = [_range(0, 10, unit=1, flat="-1"), _range(12, None, unit="x")]
        issues = validate_properties(M.GRADUATED, {"graduated_ranges": ranges})
        assert issues == {
            "per_unit_amount": ["invalid_amount", "invalid_amount"],
            "flat_amount": ["invalid_amount"],
            "graduated_ranges": ["invalid_graduated_ranges"],
        }
        assert property_error_codes(issues) == ["invalid_amount", "invalid_graduated_ranges"]

    def test_graduated_percentage(self) -> None:
        ranges = [{"from_value": 0, "to_value": None, "rate": 1, "flat_amount": None}]
        issues = validate_properties(
            M.GRADUATED_PERCENTAGE,
            {"graduated_percentage_ranges": ranges},
            aggregation_type=AggregationType.LATEST,
        )
        assert issues == {
            "billable_metric": ["invalid_value"],
            "flat_amount": ["invalid_amount"],
            "rate": ["invalid_rate"],
        }


def _num(value: Any) -> Any:
    # The tests above write decimal bounds as strings for readability; JSON has them as numbers.
    from decimal import Decimal

    return Decimal(value) if isinstance(value, str) else value


class TestPercentage:
    def test_every_issue_is_listed(self) -> None:
        issues = validate_properties(
            M.PERCENTAGE,
            {
                "rate": 1.3,
                "fixed_amount": "-2",
                "free_units_per_events": 0,
                "free_units_per_total_aggregation": 250,
            },
            aggregation_type=AggregationType.LATEST,
        )
        assert issues == {
            "billable_metric": ["invalid_value"],
            "rate": ["invalid_rate"],
            "fixed_amount": ["invalid_fixed_amount"],
            "free_units_per_events": ["invalid_free_units_per_events"],
            "free_units_per_total_aggregation": ["invalid_free_units_per_total_aggregation"],
        }

    def test_optional_fields_may_be_absent(self) -> None:
        assert validate_properties(M.PERCENTAGE, {"rate": "1.3"}) == {}

    def test_min_max_are_only_checked_with_premium(self) -> None:
        props = {"rate": "1", "per_transaction_min_amount": "5", "per_transaction_max_amount": "x"}
        assert validate_properties(M.PERCENTAGE, props) == {}
        assert validate_properties(M.PERCENTAGE, props, premium=True) == {
            "per_transaction_max_amount": ["invalid_amount"]
        }
        lower = {**props, "per_transaction_max_amount": "1"}
        assert validate_properties(M.PERCENTAGE, lower, premium=True) == {
            "per_transaction_max_amount": ["per_transaction_max_lower_than_per_transaction_min"]
        }


def test_graduated_percentage_needs_premium() -> None:
    assert validate_charge_model(M.GRADUATED_PERCENTAGE, premium=False) == {
        "charge_model": ["graduated_percentage_requires_premium_license"]
    }
    assert validate_charge_model(M.GRADUATED_PERCENTAGE, premium=True) == {}
    assert validate_charge_model(M.STANDARD, premium=False) == {}
