"""Contract: aggregate() — groups, inclusive microsecond bounds, Lago's numeric rule.

Every scenario runs with the metric stored before the events (SQLite answers whole hours from
rollups) and, where it matters, after them (rollups rebuilt) or not at all (raw scan).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from metering.ports import AggregateQuery, EventBatch, GroupAggregate, Store
from tests.metering.store.builders import CODE, SUB, at, event, metric


def query(
    from_ts: datetime | None = None,
    to_ts: datetime | None = None,
    *,
    group_keys: tuple[str, ...] = (),
    field_name: str | None = "tokens",
    sub: str = SUB,
) -> AggregateQuery:
    return AggregateQuery(
        external_subscription_id=sub,
        code=CODE,
        from_ts=from_ts,
        to_ts=to_ts or at(days=30),
        field_name=field_name,
        group_keys=group_keys,
    )


def group(
    values: tuple[str | None, ...], events: int, numeric: int, total: str, maximum: str | None
) -> GroupAggregate:
    return GroupAggregate(
        values=values,
        events=events,
        numeric_events=numeric,
        total=Decimal(total),
        maximum=None if maximum is None else Decimal(maximum),
    )


async def write(store: Store, *specs: tuple[datetime, dict[str, Any]]) -> None:
    events = tuple(event(f"t{n}", ts=ts, properties=p) for n, (ts, p) in enumerate(specs))
    await store.write_batches([EventBatch(events=events)])


async def write_with_metric(
    store: Store, timing: str, *specs: tuple[datetime, dict[str, Any]]
) -> None:
    if timing == "metric-first":
        await store.put_metric(metric())
    await write(store, *specs)
    if timing == "metric-after":
        await store.put_metric(metric())


async def test_groups_by_property_text(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(minutes=1), {"model": "gpt-4o", "type": "input", "tokens": 10}),
        (at(hours=1), {"model": "gpt-4o", "type": "input", "tokens": 5}),
        (at(hours=2), {"model": "gpt-4o", "type": "output", "tokens": 7}),
        (at(hours=3), {"model": 512, "type": "output", "tokens": 1}),
        (at(hours=4), {"type": "output", "tokens": 2}),
        (at(hours=5), {"model": None, "type": "output", "tokens": 3}),
    )
    got = await store.aggregate(query(at(), at(days=1), group_keys=("model", "type")))
    assert got == [
        group((None, "output"), 2, 2, "5", "3"),
        group(("512", "output"), 1, 1, "1", "1"),
        group(("gpt-4o", "input"), 2, 2, "15", "10"),
        group(("gpt-4o", "output"), 1, 1, "7", "7"),
    ]
    by_type = await store.aggregate(query(at(), at(days=1), group_keys=("type",)))
    assert by_type == [group(("input",), 2, 2, "15", "10"), group(("output",), 4, 4, "13", "7")]
    total = await store.aggregate(query(at(), at(days=1)))
    assert total == [group((), 6, 6, "28", "10")]


async def test_numeric_rule(store: Store, metric_timing: str) -> None:
    values: list[Any] = [
        "12",
        Decimal("4.5"),
        4.5,
        "-5",
        3,
        "foo",
        "1e3",
        ".5",
        "+5",
        None,
        "",
        True,
    ]
    specs = [(at(minutes=n), {"model": "m", "tokens": v}) for n, v in enumerate(values)]
    specs.append((at(minutes=30), {"model": "m"}))  # field missing
    await write_with_metric(store, metric_timing, *specs)
    got = await store.aggregate(query(at(), at(hours=2)))
    # 12 + 4.5 + 4.5 - 5 + 3; every event counts in ``events``.
    assert got == [group((), 13, 5, "19.0", "12")]


async def test_negative_max_and_no_numeric_values(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"type": "a", "tokens": "-5"}),
        (at(hours=2), {"type": "a", "tokens": "-2.5"}),
        (at(hours=3), {"type": "b", "tokens": "n/a"}),
    )
    got = await store.aggregate(query(group_keys=("type",)))
    assert got == [group(("a",), 2, 2, "-7.5", "-2.5"), group(("b",), 1, 0, "0", None)]


async def test_inclusive_bounds_at_the_microsecond(store: Store, metric_timing: str) -> None:
    start, end = at(hours=1, microseconds=1), at(hours=5, microseconds=-2)
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"tokens": 1000}),  # 1 us before the range
        (start, {"tokens": 1}),
        (at(hours=2), {"tokens": 10}),
        (at(hours=3, minutes=30), {"tokens": 100}),
        (end, {"tokens": 10000}),
        (at(hours=5, microseconds=-1), {"tokens": 100000}),  # 1 us after the range
    )
    assert await store.aggregate(query(start, end)) == [group((), 4, 4, "10111", "10000")]
    # A range that is one instant.
    assert await store.aggregate(query(start, start)) == [group((), 1, 1, "1", "1")]
    # Whole hours only (aligned bounds, inclusive end at the hour's last microsecond).
    aligned = await store.aggregate(query(at(hours=2), at(hours=4, microseconds=-1)))
    assert aligned == [group((), 2, 2, "110", "100")]


async def test_from_none_means_since_the_beginning(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(days=-400), {"tokens": 1}),
        (at(days=-1, minutes=7), {"tokens": 2}),
        (at(hours=1, minutes=1), {"tokens": 4}),
        (at(hours=9), {"tokens": 8}),
    )
    got = await store.aggregate(query(None, at(hours=1, minutes=1)))
    assert got == [group((), 3, 3, "7", "4")]


async def test_empty_and_inverted_ranges(store: Store, metric_timing: str) -> None:
    await write_with_metric(store, metric_timing, (at(hours=1), {"tokens": 1}))
    assert await store.aggregate(query(at(hours=2), at(hours=3))) == []
    assert await store.aggregate(query(at(hours=3), at(hours=2))) == []
    assert await store.aggregate(query(sub="someone-else")) == []


async def test_without_field_only_counts(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"type": "a", "tokens": 5}),
        (at(hours=2, minutes=5), {"type": "a", "tokens": 6}),
    )
    got = await store.aggregate(query(at(minutes=30), group_keys=("type",), field_name=None))
    assert got == [group(("a",), 2, 0, "0", None)]


async def test_other_field_and_uncovered_group_keys(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"region": "eu", "tokens": 5, "cost": "0.5"}),
        (at(hours=2), {"region": "us", "tokens": 6, "cost": "0.25"}),
        (at(hours=3), {"region": "eu", "tokens": 7}),
    )
    by_region = await store.aggregate(query(group_keys=("region",)))
    assert by_region == [group(("eu",), 2, 2, "12", "7"), group(("us",), 1, 1, "6", "6")]
    cost = await store.aggregate(query(field_name="cost"))
    assert cost == [group((), 3, 2, "0.75", "0.5")]


async def test_sums_are_exact_beyond_28_digits(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"tokens": "12345678901234567890.123456789"}),
        (at(hours=2), {"tokens": "0.000000001"}),
        (at(hours=2, minutes=1), {"tokens": Decimal("0.10")}),
    )
    got = await store.aggregate(query())
    assert got[0].total == Decimal("12345678901234567890.223456790")
    assert str(got[0].maximum) == "12345678901234567890.123456789"


async def test_subscriptions_and_codes_are_separate(store: Store, metric_timing: str) -> None:
    if metric_timing == "metric-first":
        await store.put_metric(metric())
    await store.write_batches(
        [
            EventBatch(
                events=(
                    event("a", ts=at(hours=1), properties={"tokens": 1}),
                    event("a", ts=at(hours=1), sub="sub_2", properties={"tokens": 2}),
                    event("b", ts=at(hours=1), code="other", properties={"tokens": 4}),
                )
            )
        ]
    )
    assert await store.aggregate(query()) == [group((), 1, 1, "1", "1")]
    assert await store.aggregate(query(sub="sub_2")) == [group((), 1, 1, "2", "2")]


async def test_big_and_mixed_values_across_separate_writes(
    store: Store, metric_timing: str
) -> None:
    # Separate writes land in the same rollup rows, crossing from whole numbers to decimals
    # and past 64-bit integers.
    if metric_timing == "metric-first":
        await store.put_metric(metric())
    values: list[Any] = [2**62 - 1, 2**62 - 1, 3, "0.5", 2**64, -(2**63)]
    for n, value in enumerate(values):
        props = {"type": "a", "tokens": value}
        await store.write_batches(
            [EventBatch(events=(event(f"t{n}", ts=at(hours=1), properties=props),))]
        )
    await store.write_batches(
        [
            EventBatch(
                events=(event("m", ts=at(hours=1), properties={"type": "b", "tokens": "-1.25"}),)
            )
        ]
    )
    if metric_timing == "metric-after":
        await store.put_metric(metric())
    got = await store.aggregate(query(group_keys=("type",)))
    total = Decimal(2 * (2**62 - 1) + 3 + 2**64 - 2**63) + Decimal("0.5")
    assert got == [
        group(("a",), 6, 6, str(total), str(2**64)),
        group(("b",), 1, 1, "-1.25", "-1.25"),
    ]
