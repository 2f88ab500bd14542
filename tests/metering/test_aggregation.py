"""Aggregations per type and the percentage model's running totals (section 1)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from metering import aggregation as agg
from metering.models import Event, RoundingFunction
from metering.rounding import apply_rounding
from tests.metering.builders import event, group, utc

D = Decimal


class TestGrouped:
    def test_count_ignores_properties(self) -> None:
        rows = [group(("a",), events=3, numeric_events=0), group(("b",), events=2)]
        assert agg.count_from_groups(rows) == agg.Aggregation(units=D(5), events_count=5)

    def test_sum_counts_only_numeric_events(self) -> None:
        rows = [
            group(events=4, numeric_events=3, total="12.5"),
            group(events=1, numeric_events=1, total="-2"),
        ]
        result = agg.sum_from_groups(rows)
        assert (result.units, result.events_count) == (D("10.5"), 4)

    def test_max_of_maxima_and_zero_when_none(self) -> None:
        rows = [group(events=2, total=3, maximum=2), group(events=1, total=7, maximum=7)]
        assert agg.max_from_groups(rows).units == D(7)
        assert agg.max_from_groups([group(events=2, numeric_events=0)]) == agg.Aggregation(
            units=D(0), events_count=0
        )

    def test_negative_max_stays_negative_until_the_fee(self) -> None:
        result = agg.max_from_groups([group(events=2, total=-8, maximum=-3)])
        assert (result.units, result.events_count) == (D(-3), 2)

    def test_no_rows(self) -> None:
        for fold in (agg.count_from_groups, agg.sum_from_groups, agg.max_from_groups):
            assert fold([]) == agg.Aggregation(units=D(0), events_count=0)


class TestNumericRule:
    @pytest.mark.parametrize(
        ("value", "counted"),
        [
            (12, True),
            (4.5, True),
            ("12", True),
            ("-5", True),
            (D("0.25"), True),
            ("foo_bar", False),
            ("1e3", False),
            (".5", False),
            ("+5", False),
            (None, False),
        ],
    )
    def test_only_lago_numeric_values_count(self, value: object, counted: bool) -> None:
        result = agg.sum_from_events([event({"tokens": value})], "tokens")
        assert result.events_count == (1 if counted else 0)

    def test_missing_field_is_skipped(self) -> None:
        result = agg.sum_from_events([event({"other": 1}), event({"tokens": "3"})], "tokens")
        assert (result.units, result.events_count) == (D(3), 1)


class TestLatest:
    def test_latest_timestamp_wins(self) -> None:
        events = [
            event({"v": 5}, at=utc(2024, 1, 3)),
            event({"v": 9}, at=utc(2024, 1, 1)),
            event({"v": "nope"}, at=utc(2024, 1, 9)),
        ]
        assert agg.latest_from_events(events, "v") == agg.Aggregation(units=D(5), events_count=2)

    def test_tie_goes_to_the_latest_created(self) -> None:
        at = utc(2024, 1, 2)
        events = [
            event({"v": 2}, at=at, created_at=at + timedelta(seconds=5)),
            event({"v": 1}, at=at, created_at=at + timedelta(seconds=1)),
        ]
        assert agg.latest_from_events(events, "v").units == D(2)

    def test_negative_is_clamped_and_none_is_zero(self) -> None:
        assert agg.latest_from_events([event({"v": -4})], "v") == agg.Aggregation(
            units=D(0), events_count=1
        )
        assert agg.latest_from_events([], "v") == agg.Aggregation(units=D(0), events_count=0)


class TestUniqueCount:
    def test_doc_example_counts_a_value_once(self) -> None:
        events = [event({"request_id": "id_1"}), event({"request_id": "id_1"})]
        result = agg.unique_count_from_events(events, "request_id")
        assert (result.units, result.events_count) == (D(1), 1)

    @pytest.mark.parametrize(
        ("operations", "units"),
        [
            (["add"], 1),
            (["add", "add"], 1),
            (["add", "remove"], 0),
            (["add", "remove", "add"], 1),
            (["remove"], 0),
            (["remove", "remove", "add"], 1),
            (["add", "remove", "remove"], 0),
            ([None, "remove"], 0),  # operation_type defaults to add
        ],
    )
    def test_add_remove_state_machine(self, operations: list[str | None], units: int) -> None:
        events = [
            event({"id": "x", "operation_type": op}, at=utc(2024, 1, 1, hour))
            for hour, op in enumerate(operations)
        ]
        result = agg.unique_count_from_events(events, "id")
        assert (result.units, result.events_count) == (D(units), units)

    def test_values_are_independent_and_timestamp_ordered(self) -> None:
        events = [
            event({"id": "a", "operation_type": "remove"}, at=utc(2024, 1, 3)),
            event({"id": "a"}, at=utc(2024, 1, 1)),
            event({"id": "b"}, at=utc(2024, 1, 2)),
        ]
        assert agg.unique_count_from_events(events, "id").units == D(1)

    def test_missing_field_values_share_one_null_value(self) -> None:
        events = [event({}), event({"id": None}), event({"id": "a"})]
        assert agg.unique_count_from_events(events, "id").units == D(2)

    def test_json_numbers_and_strings_of_the_same_text_are_one_value(self) -> None:
        assert agg.unique_count_from_events([event({"id": 7}), event({"id": "7"})], "id").units == 1


class TestWeightedSum:
    """api: spec/services/billable_metrics/aggregations/weighted_sum_service_spec.rb."""

    start = utc(2023, 8, 1)
    end = utc(2023, 8, 31, 23, 59, 59, 999000)

    def _run(self, events: list[Event], *, recurring: bool = False) -> agg.Aggregation:
        return agg.weighted_sum_from_events(
            events,
            "value",
            from_datetime=self.start,
            to_datetime=self.end,
            duration_days=31,
            recurring=recurring,
        )

    def test_spec_example(self) -> None:
        deltas = [
            ((0, 0), 2),
            ((1, 0), 3),
            ((1, 30), 1),
            ((2, 0), -4),
            ((4, 0), -2),
            ((5, 0), 10),
            ((5, 30), -10),
        ]
        events = [event({"value": v}, at=utc(2023, 8, 1, h, m)) for (h, m), v in deltas]
        result = self._run(events)
        assert result.units.quantize(D("0.00001")) == D("0.02218")
        assert result.units == D("0.02217741935483870968")  # 59400 / 2678400, ceil at 20
        assert result.events_count == 7
        assert result.total_aggregated_units == D(0)

    def test_single_event_at_the_start(self) -> None:
        result = self._run([event({"value": 1000}, at=self.start)])
        assert (result.units, result.events_count) == (D(1000), 1)

    def test_no_events(self) -> None:
        result = self._run([])
        assert (result.units, result.events_count) == (D(0), 0)

    def test_recurring_starts_from_earlier_deltas(self) -> None:
        earlier = event({"value": 10}, at=utc(2023, 7, 15))
        mid = event({"value": -10}, at=utc(2023, 8, 16, 12))
        result = self._run([earlier, mid], recurring=True)
        assert result.units == D(5)  # level 10 for half of the 31 days
        assert result.events_count == 1
        assert result.total_aggregated_units == D(0)
        non_recurring = self._run([earlier, mid])
        assert non_recurring.units == D(-5)

    def test_rounds_up_at_20_decimals(self) -> None:
        result = self._run([event({"value": 1}, at=utc(2023, 8, 31, 23, 59, 59))])
        # One unit for one second of a 31-day period: 1/2678400 rounded up.
        assert result.units == D("0.00000037335722819594")


class TestRunningTotals:
    values = (D(50), D(100), D(250), D(400))

    def test_per_events_takes_the_first_values(self) -> None:
        rt = agg.sum_running_total(self.values, 3, D(250))
        assert rt.values == (D(50), D(150), D(400))

    def test_per_total_stops_after_the_first_above(self) -> None:
        rt = agg.sum_running_total(self.values, 0, D(120))
        assert rt.values == (D(50), D(150))
        assert agg.sum_running_total(self.values, 0, D(0)).values == ()

    def test_count_based_totals_are_symbolic(self) -> None:
        rt = agg.count_running_total(D(1_000_000), 0, D("2.5"))
        assert (len(rt), rt.last(), rt.at(9), rt.count_below(D("2.5"))) == (
            1_000_000,
            D(1_000_000),
            D(10),
            2,
        )
        assert len(agg.count_running_total(D(5), 0, D(0))) == 0

    def test_max_event_values_keep_the_first_max(self) -> None:
        assert agg.max_event_values([D(3), D(9), D(9), D(1)]) == (D(0), D(9), D(0), D(0))


@pytest.mark.parametrize(
    ("units", "function", "precision", "expected"),
    [
        ("48.434", RoundingFunction.CEIL, 2, "48.44"),
        ("48.435", RoundingFunction.ROUND, 2, "48.44"),
        ("48.434", RoundingFunction.ROUND, 2, "48.43"),
        ("48.439", RoundingFunction.FLOOR, 2, "48.43"),
        ("2.5", RoundingFunction.ROUND, None, "3"),
        ("-2.5", RoundingFunction.ROUND, 0, "-3"),
        ("-2.1", RoundingFunction.CEIL, 0, "-2"),
        ("1234", RoundingFunction.CEIL, -2, "1300"),
        ("48.434", None, 2, "48.434"),
    ],
)
def test_metric_rounding(
    units: str, function: RoundingFunction | None, precision: int | None, expected: str
) -> None:
    assert apply_rounding(D(units), function, precision) == D(expected)
