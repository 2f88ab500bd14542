"""The six charge models: every worked example of section 3, plus invariants."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.aggregation import Aggregation, RunningTotal, count_running_total, sum_running_total
from metering.charge_models import charge_amount
from metering.charge_models.graduated import GraduatedProperties, graduated_amount
from metering.charge_models.graduated_percentage import (
    GraduatedPercentageProperties,
    graduated_percentage_amount,
)
from metering.charge_models.package import PackageProperties, package_amount
from metering.charge_models.percentage import (
    PercentageProperties,
    per_event_amount,
    percentage_amount,
)
from metering.charge_models.standard import StandardProperties, standard_amount
from metering.charge_models.volume import VolumeProperties, volume_amount
from metering.models import ChargeModel

D = Decimal


def _range(start: int | str, end: int | str | None, unit: str, flat: str) -> dict[str, Any]:
    return {"from_value": start, "to_value": end, "per_unit_amount": unit, "flat_amount": flat}


def _agg(units: Decimal | int, count: int = 0, **extra: Any) -> Aggregation:
    return Aggregation(units=D(units), events_count=count, **extra)


def test_standard() -> None:
    assert standard_amount(D("15250"), StandardProperties.read({"amount": "0.00003"})) == D(
        "0.45750"
    )


class TestPackage:
    @pytest.mark.parametrize(
        ("units", "size", "free", "amount", "expected"),
        [
            (121, 10, 10, "1", "12"),  # spec: ceil(111 / 10) = 12 packages
            (201, 100, 100, "5", "10"),  # doc: $0 + $5 + $5
            (0, 10, 0, "5", "0"),
            (5, 10, 10, "5", "0"),  # within the free units
            (10, 10, 10, "5", "0"),  # exactly the free units: 0 packages
            (11, 10, 10, "5", "5"),  # a started package is charged in full
            ("0.5", 1000, 0, "0.03", "0.03"),
        ],
    )
    def test_examples(
        self, units: int | str, size: int, free: int, amount: str, expected: str
    ) -> None:
        props = PackageProperties(amount=D(amount), package_size=size, free_units=free)
        assert package_amount(D(units), props) == D(expected)

    def test_free_units_default_to_zero(self) -> None:
        props = PackageProperties.read({"amount": "2", "package_size": 3})
        assert package_amount(D(7), props) == D(6)


class TestGraduated:
    spec = GraduatedProperties.read(
        {
            "graduated_ranges": [
                _range(0, 10, "10", "2"),
                _range(11, 20, "5", "3"),
                _range(21, None, "5", "3"),
            ]
        }
    )

    @pytest.mark.parametrize(
        ("units", "expected"),
        [
            (0, "2"),
            (1, "12"),
            (10, "102"),
            (11, "110"),
            (20, "155"),
            (21, "163"),
            ("10.5", "107.5"),
        ],
    )
    def test_spec_examples(self, units: int | str, expected: str) -> None:
        assert graduated_amount(D(units), self.spec) == D(expected)

    def test_adjacent_ranges_share_their_bounds(self) -> None:
        props = GraduatedProperties.read(
            {
                "graduated_ranges": [
                    _range(0, "0.1", "10", "0"),
                    _range("0.1", 1, "5", "0"),
                    _range(1, None, "1", "0"),
                ]
            }
        )
        # 0.1 x 10 + 0.9 x 5 + 1 x 1: adjacent tiers do not add the "+1".
        assert graduated_amount(D(2), props) == D("6.5")
        assert graduated_amount(D("0.1"), props) == D("1")

    def test_single_range_is_not_adjacent(self) -> None:
        props = GraduatedProperties.read({"graduated_ranges": [_range(0, None, "2", "1")]})
        assert graduated_amount(D(3), props) == D(7)

    @given(
        units=st.decimals(min_value=0, max_value=10**9, places=4),
        unit=st.decimals(min_value=0, max_value=1000, places=6),
        flat=st.decimals(min_value=0, max_value=1000, places=2),
    )
    def test_one_open_range_is_standard_plus_flat(
        self, units: Decimal, unit: Decimal, flat: Decimal
    ) -> None:
        props = GraduatedProperties.read(
            {"graduated_ranges": [_range(0, None, str(unit), str(flat))]}
        )
        expected = standard_amount(units, StandardProperties(amount=unit)) + flat
        assert graduated_amount(units, props) == expected


class TestVolume:
    doc = VolumeProperties.read(
        {
            "volume_ranges": [
                _range(0, 10_000, "0.0010", "10"),
                _range(10_001, 50_000, "0.0008", "10"),
                _range(50_001, 100_000, "0.0006", "10"),
                _range(100_001, None, "0.0004", "10"),
            ]
        }
    )

    def test_doc_example(self) -> None:
        assert volume_amount(D(65_000), self.doc) == D(49)

    def test_zero_units_bill_the_first_flat_amount(self) -> None:
        assert volume_amount(D(0), self.doc) == D(10)

    def test_fractional_units_use_the_ceiling(self) -> None:
        props = VolumeProperties.read(
            {"volume_ranges": [_range(0, 100, "1", "0"), _range(101, 200, "2", "0")]}
        )
        assert volume_amount(D("100.5"), props) == D("201.0")
        assert volume_amount(D(100), props) == D(100)

    def test_ranges_are_sorted_by_from_value(self) -> None:
        props = VolumeProperties.read(
            {"volume_ranges": [_range(11, None, "2", "0"), _range(0, 10, "1", "0")]}
        )
        assert volume_amount(D(5), props) == D(5)

    def test_units_outside_every_range_price_zero(self) -> None:
        props = VolumeProperties.read(
            {"volume_ranges": [_range(0, 10, "1", "1"), _range(12, None, "1", "1")]}
        )
        assert volume_amount(D(11), props) == D(0)
        assert volume_amount(D(-1), props) == D(0)


class TestPercentage:
    def test_spec_example(self) -> None:
        values = [D(50), D(100), D(250), D(400)]
        props = PercentageProperties.read(
            {
                "rate": "1.3",
                "fixed_amount": "2",
                "free_units_per_events": 3,
                "free_units_per_total_aggregation": "250",
            }
        )
        running = sum_running_total(values, 3, D(250))
        amount = percentage_amount(D(800), props, events_count=4, running_total=running)
        assert amount == D("11.15")

    def test_doc_example(self) -> None:
        values = [D(200), D(100), D(100), D(50)]
        props = PercentageProperties.read(
            {
                "rate": "1.2",
                "fixed_amount": "0.10",
                "free_units_per_events": 3,
                "free_units_per_total_aggregation": "500",
            }
        )
        running = sum_running_total(values, 3, D(500))
        amount = percentage_amount(D(450), props, events_count=4, running_total=running)
        assert amount == D("0.70")

    @pytest.mark.parametrize(
        ("props", "units", "count", "running", "expected"),
        [
            ({"rate": "2"}, 100, 3, RunningTotal(), "2"),
            ({"rate": "2", "fixed_amount": "1"}, 100, 3, RunningTotal(), "5"),
            ({"rate": "2", "fixed_amount": "1"}, 0, 3, RunningTotal(), "0"),
            # count_agg: running totals 1..5; the first 2 events are free (2 units, 2 fees).
            (
                {"rate": "10", "fixed_amount": "1", "free_units_per_events": 2},
                5,
                5,
                count_running_total(D(5), 2, D(0)),
                "3.3",
            ),
            # free amount above the units: no rated part.
            (
                {"rate": "10", "free_units_per_total_aggregation": "1000"},
                50,
                2,
                RunningTotal(values=(D(20), D(50))),
                "0",
            ),
        ],
    )
    def test_formula(
        self,
        props: dict[str, Any],
        units: int,
        count: int,
        running: RunningTotal,
        expected: str,
    ) -> None:
        typed = PercentageProperties.read(props)
        amount = percentage_amount(D(units), typed, events_count=count, running_total=running)
        assert amount == D(expected)

    def test_per_transaction_bounds_with_premium(self) -> None:
        props = {
            "rate": "2.99",
            "per_transaction_min_amount": "1.75",
            "per_transaction_max_amount": "12",
        }
        values = (D(10), D(80), D(10_000))
        aggregation = _agg(10_090, 3, event_values=values)
        premium = charge_amount(ChargeModel.PERCENTAGE, props, D(10_090), aggregation, premium=True)
        assert premium == D("16.142")
        plain = charge_amount(ChargeModel.PERCENTAGE, props, D(10_090), aggregation, premium=False)
        assert plain == D("301.691")

    def test_per_event_consumes_free_units_first(self) -> None:
        props = PercentageProperties.read(
            {
                "rate": "10",
                "fixed_amount": "1",
                "free_units_per_events": 1,
                "free_units_per_total_aggregation": "15",
                "per_transaction_min_amount": "0",
            }
        )
        # 10 is free (5 free amount left), 20 becomes 15 (all free units used), 30 is paid.
        assert per_event_amount([D(10), D(20), D(30)], props) == D("2.5") + D(4)


class TestGraduatedPercentage:
    def _props(self, *ranges: tuple[int, int | None, str, str]) -> GraduatedPercentageProperties:
        return GraduatedPercentageProperties.read(
            {
                "graduated_percentage_ranges": [
                    {"from_value": a, "to_value": b, "rate": r, "flat_amount": f}
                    for a, b, r, f in ranges
                ]
            }
        )

    def test_spec_example(self) -> None:
        props = self._props((0, 10, "1", "200"), (11, 20, "2", "300"), (21, None, "3", "400"))
        assert graduated_percentage_amount(D(21), props) == D("900.33")
        assert graduated_percentage_amount(D(0), props) == D(200)

    def test_doc_example(self) -> None:
        props = self._props(
            (0, 1000, "1", "200"), (1001, 10_000, "2", "300"), (10_001, None, "3", "400")
        )
        assert graduated_percentage_amount(D(5050), props) == D(591)
        assert graduated_percentage_amount(D(500), props) == D(205)


@pytest.mark.parametrize(
    ("model", "props", "units", "expected"),
    [
        (ChargeModel.STANDARD, {"amount": "0.5"}, 3, "1.5"),
        (ChargeModel.PACKAGE, {"amount": "1", "package_size": 10, "free_units": 10}, 121, "12"),
        (ChargeModel.GRADUATED, {"graduated_ranges": [_range(0, None, "1", "2")]}, 3, "5"),
        (ChargeModel.VOLUME, {"volume_ranges": [_range(0, None, "1", "2")]}, 3, "5"),
        (ChargeModel.PERCENTAGE, {"rate": "50"}, 3, "1.5"),
        (
            ChargeModel.GRADUATED_PERCENTAGE,
            {
                "graduated_percentage_ranges": [
                    {"from_value": 0, "to_value": None, "rate": "50", "flat_amount": "1"}
                ]
            },
            3,
            "2.5",
        ),
    ],
)
def test_dispatch(model: ChargeModel, props: dict[str, Any], units: int, expected: str) -> None:
    assert charge_amount(model, props, D(units), _agg(units, 1)) == D(expected)
