"""Contract: aggregate_series() — per UTC hour/day windows, partial edges, groups, bounds.

Runs against every adapter, with the metric stored before the events (SQLite reads whole windows
from rollups), after them (rollups rebuilt) or never (raw scan). The property test in
``test_property.py`` compares random series with a raw scan as well.
"""

from __future__ import annotations

from datetime import datetime

from metering.ports import Store, Window, WindowAggregate
from tests.metering.store.builders import at
from tests.metering.store.test_aggregate import group, query, write_with_metric


def window(start: datetime, *groups: object) -> WindowAggregate:
    return WindowAggregate(start=start, groups=tuple(groups))  # type: ignore[arg-type]


async def test_hours_with_partial_edges(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=10, minutes=29), {"model": "a", "type": "input", "tokens": 1000}),  # before
        (at(hours=10, minutes=30), {"model": "a", "type": "input", "tokens": 1}),
        (at(hours=10, minutes=59), {"model": "b", "type": "input", "tokens": 2}),
        (at(hours=11), {"model": "a", "type": "output", "tokens": 4}),
        (at(hours=11, minutes=59), {"model": "a", "type": "input", "tokens": 8}),
        (at(hours=13, minutes=15), {"model": "a", "type": "input", "tokens": 16}),
        (at(hours=13, minutes=15, microseconds=1), {"model": "a", "tokens": 2000}),  # after
    )
    got = await store.aggregate_series(
        query(at(hours=10, minutes=30), at(hours=13, minutes=15), group_keys=("model",)),
        Window.HOUR,
    )
    assert got == [
        window(at(hours=10), group(("a",), 1, 1, "1", "1"), group(("b",), 1, 1, "2", "2")),
        window(at(hours=11), group(("a",), 2, 2, "12", "8")),
        # hour 12 holds nothing: left out
        window(at(hours=13), group(("a",), 1, 1, "16", "16")),
    ]


async def test_days_with_partial_edges_and_midnight(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=5, minutes=59), {"type": "input", "tokens": 1000}),  # before the range
        (at(hours=6), {"type": "input", "tokens": 1}),
        (at(hours=23, minutes=59, seconds=59), {"type": "output", "tokens": 2}),
        (at(days=1), {"type": "input", "tokens": 4}),  # midnight: the second day
        (at(days=1, hours=12), {"type": "input", "tokens": 8}),
        (at(days=2, hours=23), {"type": "output", "tokens": 16}),
        (at(days=3, hours=1, minutes=30), {"type": "input", "tokens": 32}),
        (at(days=3, hours=1, minutes=31), {"type": "input", "tokens": 3000}),  # after
    )
    got = await store.aggregate_series(
        query(at(hours=6), at(days=3, hours=1, minutes=30), group_keys=("type",)), Window.DAY
    )
    assert got == [
        window(at(), group(("input",), 1, 1, "1", "1"), group(("output",), 1, 1, "2", "2")),
        window(at(days=1), group(("input",), 2, 2, "12", "8")),
        window(at(days=2), group(("output",), 1, 1, "16", "16")),
        window(at(days=3), group(("input",), 1, 1, "32", "32")),
    ]
    # The windows add up to the plain aggregate of the same range.
    total = await store.aggregate(query(at(hours=6), at(days=3, hours=1, minutes=30)))
    assert total == [group((), 6, 6, "63", "32")]


async def test_range_inside_one_window(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=2, minutes=10), {"tokens": 1}),
        (at(hours=2, minutes=20), {"tokens": 2}),
        (at(hours=2, minutes=30), {"tokens": 4}),
    )
    within = query(at(hours=2, minutes=15), at(hours=2, minutes=30))
    assert await store.aggregate_series(within, Window.HOUR) == [
        window(at(hours=2), group((), 2, 2, "6", "4"))
    ]
    assert await store.aggregate_series(within, Window.DAY) == [
        window(at(), group((), 2, 2, "6", "4"))
    ]


async def test_unbounded_start_counts_only_fields_and_empty_answers(
    store: Store, metric_timing: str
) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(days=-40, hours=3), {"type": "a", "tokens": 1}),
        (at(hours=1), {"type": "a", "tokens": 2}),
        (at(hours=1, minutes=5), {"type": "b", "tokens": "n/a"}),
    )
    got = await store.aggregate_series(
        query(None, at(hours=1, minutes=5), field_name=None), Window.DAY
    )
    assert got == [
        window(at(days=-40), group((), 1, 0, "0", None)),
        window(at(), group((), 2, 0, "0", None)),
    ]
    numeric = await store.aggregate_series(query(None, at(days=1)), Window.DAY)
    assert numeric[-1] == window(at(), group((), 2, 1, "2", "2"))
    assert await store.aggregate_series(query(at(hours=2), at(hours=1)), Window.HOUR) == []
    assert await store.aggregate_series(query(sub="someone-else"), Window.DAY) == []
    assert await store.aggregate_series(query(at(hours=3), at(hours=9)), Window.HOUR) == []


async def test_groups_by_a_key_outside_the_rollups(store: Store, metric_timing: str) -> None:
    await write_with_metric(
        store,
        metric_timing,
        (at(hours=1), {"region": "eu", "tokens": 5}),
        (at(days=1, hours=2), {"region": "us", "tokens": 6}),
        (at(days=1, hours=3), {"region": "eu", "tokens": 7}),
    )
    got = await store.aggregate_series(query(at(), group_keys=("region",)), Window.DAY)
    assert got == [
        window(at(), group(("eu",), 1, 1, "5", "5")),
        window(at(days=1), group(("eu",), 1, 1, "7", "7"), group(("us",), 1, 1, "6", "6")),
    ]
