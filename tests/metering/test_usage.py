"""Current usage assembly: buckets, fees, rounding, sorting and the store queries (sections 2-4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.errors import NotFound
from metering.filters import compile_buckets
from metering.formats import format_units
from metering.models import (
    ALL_FILTER_VALUES,
    AggregationType,
    BillableMetric,
    Charge,
    ChargeModel,
    Event,
    Plan,
    RoundingFunction,
)
from metering.periods import BillingPeriod
from metering.usage import (
    ChargeData,
    CustomerUsage,
    InputKind,
    charge_query,
    customer_usage,
    input_kind,
    usage_queries,
)
from tests.metering.builders import (
    charge,
    charge_filter,
    event,
    groups_from_events,
    metric,
    plan,
    utc,
)

D = Decimal
A = AggregationType
PERIOD = BillingPeriod(
    from_datetime=utc(2022, 3, 1),
    to_datetime=utc(2022, 3, 31, 23, 59, 59, 999_999),
    issuing_date=date(2022, 3, 31),
    start_date=date(2022, 3, 1),
    end_date=date(2022, 3, 31),
    duration_days=31,
)
MID = utc(2022, 3, 16)


def _at(day: int, hour: int = 0) -> Any:
    return utc(2022, 3, day, hour)


def _usage(
    p: Plan,
    metrics: Sequence[BillableMetric],
    events: Sequence[Event],
    *,
    premium: bool = False,
) -> CustomerUsage:
    """Run usage the way the service does: one query per charge, answered from ``events``."""
    by_id = {m.id: m for m in metrics}
    queries = usage_queries(
        external_subscription_id="sub-1", plan=p, metrics=by_id, period=PERIOD, premium=premium
    )
    data: dict[str, ChargeData] = {}
    for q in queries:
        window = [
            e
            for e in events
            if e.code == q.query.code
            and (q.query.from_ts is None or e.timestamp >= q.query.from_ts)
            and e.timestamp <= q.query.to_ts
        ]
        if q.kind is InputKind.GROUPS:
            rows = groups_from_events(window, q.query.group_keys, q.query.field_name)
            data[q.charge_id] = ChargeData(groups=rows)
        else:
            data[q.charge_id] = ChargeData(events=window)
    return customer_usage(period=PERIOD, plan=p, metrics=by_id, data=data, premium=premium)


class TestTokenTemplate:
    """The seed's shape: sum of tokens, package per 1,000 tokens per model and type."""

    bm = metric(filters={"model": ["gpt-4-8k", "gpt-4-32k"], "type": ["input", "output"]})
    f_8k_in = charge_filter(
        {"model": ["gpt-4-8k"], "type": ["input"]},
        {"amount": "0.03", "package_size": 1000, "free_units": 0},
        invoice_display_name="8k-input",
    )
    f_8k_out = charge_filter(
        {"model": ["gpt-4-8k"], "type": ["output"]},
        {"amount": "0.06", "package_size": 1000, "free_units": 0},
    )
    f_32k = charge_filter(
        {"model": ["gpt-4-32k"], "type": [ALL_FILTER_VALUES]},
        {"amount": "0.12", "package_size": 1000, "free_units": 0},
    )
    ch = charge(
        bm,
        ChargeModel.PACKAGE,
        {"amount": "0", "package_size": 1, "free_units": 0},
        filters=[f_8k_in, f_8k_out, f_32k],
    )

    def events(self) -> list[Event]:
        return [
            event({"model": "gpt-4-8k", "type": "input", "tokens": 5000}, at=_at(2)),
            event({"model": "gpt-4-8k", "type": "input", "tokens": "250"}, at=_at(3)),
            event({"model": "gpt-4-8k", "type": "input", "tokens": 10000}, at=_at(4)),
            event({"model": "gpt-4-8k", "type": "output", "tokens": 999}, at=_at(5)),
            event({"model": "gpt-4-32k", "type": "output", "tokens": 1001}, at=_at(6)),
            event({"model": "gpt-3.5", "type": "input", "tokens": 1000}, at=_at(7)),
            event({"model": "gpt-4-8k", "tokens": 100}, at=_at(8)),
            event({"model": "gpt-4-8k", "type": "input", "tokens": "n/a"}, at=_at(9)),
            event({"model": "gpt-4-8k", "type": "input", "tokens": 7}, at=utc(2022, 2, 28)),
            event({"model": "gpt-4-8k", "type": "input", "tokens": 7}, code="other"),
        ]

    def test_buckets_and_totals(self) -> None:
        usage = _usage(plan(self.ch), [self.bm], self.events())
        assert (usage.from_datetime, usage.to_datetime) == (
            PERIOD.from_datetime,
            PERIOD.to_datetime,
        )
        assert usage.issuing_date == date(2022, 3, 31)
        assert usage.currency == "USD"
        (charge_usage,) = usage.charges_usage
        by_values = {
            None if f.values is None else tuple(sorted(f.values.items())): f
            for f in charge_usage.filters
        }
        rows = {
            key: (format_units(f.units), f.events_count, f.amount_cents)
            for key, f in by_values.items()
        }
        assert rows == {
            (("model", ("gpt-4-8k",)), ("type", ("input",))): ("15250.0", 3, 48),
            (("model", ("gpt-4-8k",)), ("type", ("output",))): ("999.0", 1, 6),
            (("model", ("gpt-4-32k",)), ("type", (ALL_FILTER_VALUES,))): ("1001.0", 1, 24),
            None: ("1100.0", 2, 0),
        }
        assert by_values[None].invoice_display_name is None
        names = {f.invoice_display_name for f in charge_usage.filters}
        assert names == {"8k-input", None}
        assert (format_units(charge_usage.units), charge_usage.events_count) == ("18350.0", 7)
        assert charge_usage.amount_cents == 78
        assert usage.amount_cents == usage.total_amount_cents == 78
        assert usage.taxes_amount_cents == 0

    def test_events_and_groups_agree(self) -> None:
        # The same charge priced from raw events (as the EVENTS path does) gives the same fees.
        p = plan(self.ch)
        grouped = _usage(p, [self.bm], self.events()).charges_usage[0]
        matcher_keys = compile_buckets(self.bm, self.ch).keys
        assert matcher_keys == ("model", "type")
        window = [
            e
            for e in self.events()
            if e.code == "llm_tokens" and e.timestamp >= PERIOD.from_datetime
        ]
        raw = customer_usage(
            period=PERIOD,
            plan=p,
            metrics={self.bm.id: self.bm},
            data={
                self.ch.id: ChargeData(groups=groups_from_events(window, matcher_keys, "tokens"))
            },
            premium=False,
        ).charges_usage[0]
        assert raw == grouped

    def test_every_filter_appears_without_usage(self) -> None:
        usage = _usage(plan(self.ch), [self.bm], [])
        fees = usage.charges_usage[0].filters
        assert len(fees) == 4
        assert all((f.units, f.events_count, f.amount_cents) == (D(0), 0, 0) for f in fees)
        assert [f.filter_id for f in fees] == [
            self.f_8k_in.id,
            self.f_8k_out.id,
            self.f_32k.id,
            None,
        ]


def test_charge_without_filters_has_one_fee_and_no_filter_entries() -> None:
    bm = metric(A.COUNT, filters={"model": ["a"]})
    usage = _usage(plan(charge(bm, properties={"amount": "0.5"})), [bm], [event(at=MID)] * 3)
    (charge_usage,) = usage.charges_usage
    assert charge_usage.filters == ()
    assert (charge_usage.units, charge_usage.events_count, charge_usage.amount_cents) == (
        D(3),
        3,
        150,
    )


def test_graduated_flat_fee_shows_without_events() -> None:
    bm = metric()
    ranges = [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "10", "flat_amount": "2"},
        {"from_value": 11, "to_value": None, "per_unit_amount": "5", "flat_amount": "3"},
    ]
    usage = _usage(plan(charge(bm, ChargeModel.GRADUATED, {"graduated_ranges": ranges})), [bm], [])
    assert usage.charges_usage[0].amount_cents == 200
    assert usage.charges_usage[0].units == 0


def test_charges_are_sorted_by_metric_name_case_insensitively() -> None:
    metrics = [metric(name=n, code=n.lower()) for n in ("beta", "Alpha", "gamma", "ALPHA two")]
    p = plan(*(charge(m) for m in metrics))
    usage = _usage(p, metrics, [])
    assert [c.metric.name for c in usage.charges_usage] == ["Alpha", "ALPHA two", "beta", "gamma"]


class TestNegativeUsage:
    def test_negative_sum_is_a_zero_fee(self) -> None:
        bm = metric()
        evs = [event({"tokens": 5}, at=MID), event({"tokens": -8}, at=MID)]
        usage = _usage(plan(charge(bm, properties={"amount": "1"})), [bm], evs)
        fee = usage.charges_usage[0]
        assert (fee.units, fee.events_count, fee.amount_cents, fee.amount) == (D(0), 2, 0, D(0))

    def test_negative_max_is_a_zero_unit_fee(self) -> None:
        bm = metric(A.MAX)
        usage = _usage(
            plan(charge(bm, properties={"amount": "1"})), [bm], [event({"tokens": -3}, at=MID)]
        )
        assert (usage.charges_usage[0].units, usage.charges_usage[0].amount_cents) == (D(0), 0)


def test_cents_are_rounded_per_bucket_then_summed() -> None:
    bm = metric(filters={"m": ["a", "b"]})
    fa = charge_filter({"m": ["a"]}, {"amount": "0.005"})
    fb = charge_filter({"m": ["b"]}, {"amount": "0.005"})
    ch = charge(bm, filters=[fa, fb])
    evs = [event({"m": "a", "tokens": 1}, at=MID), event({"m": "b", "tokens": 1}, at=MID)]
    usage = _usage(plan(ch), [bm], evs)
    charge_usage = usage.charges_usage[0]
    assert [f.amount_cents for f in charge_usage.filters] == [1, 1, 0]
    assert charge_usage.amount_cents == 2  # not round(0.01 dollars) = 1
    assert charge_usage.amount == D("0.010")


def test_disjoint_filters_count_an_event_twice() -> None:
    bm = metric(A.COUNT, filters={"model": ["a"], "type": ["input"]})
    ch = charge(
        bm,
        filters=[
            charge_filter({"model": ["a"]}, {"amount": "1"}),
            charge_filter({"type": ["input"]}, {"amount": "1"}),
        ],
    )
    usage = _usage(plan(ch), [bm], [event({"model": "a", "type": "input"}, at=MID)])
    assert [f.units for f in usage.charges_usage[0].filters] == [1, 1, 0]
    assert usage.charges_usage[0].events_count == 2


def test_metric_rounding_happens_before_pricing() -> None:
    bm = metric(rounding_function=RoundingFunction.CEIL, rounding_precision=2)
    usage = _usage(
        plan(charge(bm, properties={"amount": "1"})), [bm], [event({"tokens": "48.434"}, at=MID)]
    )
    fee = usage.charges_usage[0]
    assert (format_units(fee.units), fee.amount_cents) == ("48.44", 4844)


class TestPercentage:
    def _values(self, values: Sequence[int]) -> list[Event]:
        return [event({"amount": v}, at=MID + timedelta(hours=i)) for i, v in enumerate(values)]

    def test_spec_example(self) -> None:
        bm = metric(field_name="amount")
        props = {
            "rate": "1.3",
            "fixed_amount": "2",
            "free_units_per_events": 3,
            "free_units_per_total_aggregation": "250",
        }
        ch = charge(bm, ChargeModel.PERCENTAGE, props)
        assert input_kind(bm, ch, premium=False) is InputKind.EVENTS
        usage = _usage(plan(ch), [bm], self._values([50, 100, 250, 400]))
        assert usage.charges_usage[0].amount == D("11.15")
        assert usage.charges_usage[0].amount_cents == 1115

    def test_doc_example(self) -> None:
        bm = metric(field_name="amount")
        props = {
            "rate": "1.2",
            "fixed_amount": "0.10",
            "free_units_per_events": 3,
            "free_units_per_total_aggregation": "500",
        }
        usage = _usage(
            plan(charge(bm, ChargeModel.PERCENTAGE, props)), [bm], self._values([200, 100, 100, 50])
        )
        assert usage.charges_usage[0].amount_cents == 70

    @pytest.mark.parametrize(("premium", "cents"), [(True, 1614), (False, 30169)])
    def test_per_transaction_bounds(self, premium: bool, cents: int) -> None:
        bm = metric(field_name="amount")
        props = {
            "rate": "2.99",
            "per_transaction_min_amount": "1.75",
            "per_transaction_max_amount": "12",
        }
        ch = charge(bm, ChargeModel.PERCENTAGE, props)
        usage = _usage(plan(ch), [bm], self._values([10, 80, 10000]), premium=premium)
        assert usage.charges_usage[0].amount_cents == cents

    def test_count_based_percentage_stays_on_grouped_aggregates(self) -> None:
        bm = metric(A.COUNT)
        props = {"rate": "10", "fixed_amount": "1", "free_units_per_events": 2}
        ch = charge(bm, ChargeModel.PERCENTAGE, props)
        assert input_kind(bm, ch, premium=True) is InputKind.GROUPS
        usage = _usage(plan(ch), [bm], [event(at=MID) for _ in range(5)])
        assert usage.charges_usage[0].amount == D("3.3")

    def test_count_based_per_event_pricing(self) -> None:
        bm = metric(A.COUNT)
        props = {"rate": "10", "fixed_amount": "1", "per_transaction_max_amount": "0.5"}
        usage = _usage(
            plan(charge(bm, ChargeModel.PERCENTAGE, props)), [bm], [event(at=MID)] * 4, premium=True
        )
        assert usage.charges_usage[0].amount == D("2.0")


class TestPerEventAggregations:
    def test_unique_count_reports_units_as_events_count(self) -> None:
        bm = metric(A.UNIQUE_COUNT, field_name="user")
        evs = [event({"user": u}, at=MID) for u in ("a", "b", "a")] + [
            event({"user": "b", "operation_type": "remove"}, at=MID + timedelta(hours=1))
        ]
        usage = _usage(plan(charge(bm, properties={"amount": "2"})), [bm], evs)
        fee = usage.charges_usage[0]
        assert (fee.units, fee.events_count, fee.amount_cents) == (D(1), 1, 200)

    def test_recurring_unique_count_carries_earlier_events(self) -> None:
        bm = metric(A.UNIQUE_COUNT, field_name="user", recurring=True)
        evs = [event({"user": "a"}, at=utc(2022, 1, 5)), event({"user": "b"}, at=MID)]
        assert _usage(plan(charge(bm)), [bm], evs).charges_usage[0].units == 2

    def test_latest(self) -> None:
        bm = metric(A.LATEST, field_name="seats")
        evs = [
            event({"seats": 4}, at=_at(2)),
            event({"seats": 9}, at=_at(20)),
            event({"seats": 1}, at=_at(10)),
        ]
        fee = _usage(plan(charge(bm, properties={"amount": "1"})), [bm], evs).charges_usage[0]
        assert (fee.units, fee.events_count) == (D(9), 3)

    def test_weighted_sum_reports_the_closing_level(self) -> None:
        bm = metric(A.WEIGHTED_SUM, field_name="gb")
        evs = [event({"gb": 10}, at=PERIOD.from_datetime), event({"gb": -4}, at=MID)]
        fee = _usage(plan(charge(bm, properties={"amount": "1"})), [bm], evs).charges_usage[0]
        # 10 GB for 15 days, then 6 GB for 16 days, over 31 days.
        assert fee.units == D("7.93548387096774193549")  # 246 / 31, rounded up at 20 decimals
        assert fee.events_count == 2
        assert fee.total_aggregated_units == 6


class TestQueries:
    def test_grouped_query_uses_the_charge_filter_keys(self) -> None:
        bm = metric(filters={"model": ["a"], "type": ["input"], "region": ["eu"]})
        ch = charge(bm, filters=[charge_filter({"type": ["input"], "model": ["a"]})])
        q = charge_query(
            external_subscription_id="sub-1", metric=bm, charge=ch, period=PERIOD, premium=False
        )
        assert q.kind is InputKind.GROUPS
        assert q.query.group_keys == ("model", "type")
        assert (q.query.code, q.query.field_name) == ("llm_tokens", "tokens")
        assert (q.query.from_ts, q.query.to_ts) == (PERIOD.from_datetime, PERIOD.to_datetime)

    @pytest.mark.parametrize(
        ("aggregation", "recurring", "kind", "unbounded"),
        [
            (A.COUNT, False, InputKind.GROUPS, False),
            (A.SUM, False, InputKind.GROUPS, False),
            (A.SUM, True, InputKind.GROUPS, True),
            (A.MAX, False, InputKind.GROUPS, False),
            (A.LATEST, False, InputKind.EVENTS, False),
            (A.UNIQUE_COUNT, False, InputKind.EVENTS, False),
            (A.UNIQUE_COUNT, True, InputKind.EVENTS, True),
            (A.WEIGHTED_SUM, False, InputKind.EVENTS, False),
            (A.WEIGHTED_SUM, True, InputKind.EVENTS, True),
        ],
    )
    def test_kinds_and_windows(
        self, aggregation: AggregationType, recurring: bool, kind: InputKind, unbounded: bool
    ) -> None:
        bm = metric(aggregation, recurring=recurring)
        (q,) = usage_queries(
            external_subscription_id="sub-1",
            plan=plan(charge(bm)),
            metrics={bm.id: bm},
            period=PERIOD,
            premium=False,
        )
        assert q.kind is kind
        assert (q.query.from_ts is None) is unbounded
        if aggregation is A.COUNT:
            assert q.query.field_name is None

    def test_unknown_metric(self) -> None:
        bm = metric()
        with pytest.raises(NotFound) as raised:
            usage_queries(
                external_subscription_id="s",
                plan=plan(charge(bm)),
                metrics={},
                period=PERIOD,
                premium=False,
            )
        assert raised.value.code == "billable_metrics_not_found"


_amounts = st.decimals(min_value=0, max_value=10, places=4).map(str)


@settings(max_examples=60, deadline=None)
@given(
    amounts=st.lists(_amounts, min_size=1, max_size=4),
    default=_amounts,
    tokens=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "zz", None]), st.integers(-50, 5000)),
        max_size=25,
    ),
)
def test_charge_cents_are_the_sum_of_rounded_bucket_cents(
    amounts: list[str], default: str, tokens: list[tuple[str | None, int]]
) -> None:
    values = ["a", "b", "c", "d"]
    bm = metric(filters={"m": values})
    filters = [charge_filter({"m": [values[i]]}, {"amount": a}) for i, a in enumerate(amounts)]
    ch: Charge = charge(bm, properties={"amount": default}, filters=filters)
    evs = [event({"m": m, "tokens": t} if m else {"tokens": t}, at=MID) for m, t in tokens]
    usage = _usage(plan(ch), [bm], evs)
    (charge_usage,) = usage.charges_usage
    assert charge_usage.amount_cents == sum(f.amount_cents for f in charge_usage.filters)
    assert usage.amount_cents == charge_usage.amount_cents
    assert charge_usage.events_count == sum(1 for _, t in tokens)
    assert all(f.units >= 0 and f.amount_cents >= 0 for f in charge_usage.filters)
