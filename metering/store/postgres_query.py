"""Aggregates of the PostgreSQL adapter: whole buckets from rollups, raw edges from events.

As in the SQLite adapter, an aggregate is ONE statement, hence one snapshot: whole buckets
from rollups, the partial edge hours from raw events, and the spec the rollups were built
with, so a rebuild committed by another replica is never read with a stale idea of the dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg
import msgspec

from metering.ports import AggregateQuery, GroupAggregate
from metering.store.codec import JsonCodec
from metering.store.folding import GroupFolder, UnreadableRollup, group_results, rollup_number
from metering.store.postgres_schema import Conn
from metering.store.rollups import (
    DimsProjection,
    RollupSpec,
    Split,
    decode_spec,
    event_value,
    group_values,
    split_range,
)
from metering.store.scan import scan_groups
from metering.store.sql_reads import MIN_TS, bounds
from metering.values import VALUE_LIMIT

__all__ = ["Aggregated", "aggregate", "split_arrays"]

_RAW = (
    "SELECT properties FROM events "
    "WHERE external_subscription_id = $1 AND code = $2 AND ts BETWEEN $3 AND $4"
)

# kind 0: rollup rows of the (grain, first, end) ranges given as arrays, summed per dims by
# the server (NUMERIC sums are exact; a month of day rows per dims comes back as one row);
# kind 1: raw events of up to two inclusive ranges; kind 2: the spec row.
_SPLIT = """
(SELECT 0 AS kind, r.dims AS text, NULL::text AS extra, sum(r.events)::int8 AS events,
        sum(r.numeric_events)::int8 AS numeric_events, sum(r.total) AS total,
        max(r.maximum) AS maximum
 FROM unnest($3::int8[], $4::int8[], $5::int8[]) AS g(grain, first, stop)
 JOIN rollups r ON r.code = $2 AND r.external_subscription_id = $1 AND r.grain = g.grain
               AND r.bucket >= g.first AND r.bucket < g.stop
 GROUP BY r.dims)
UNION ALL
SELECT 1, e.properties, NULL, NULL, NULL, NULL, NULL
FROM unnest($6::int8[], $7::int8[]) AS w(low, high)
JOIN events e ON e.external_subscription_id = $1 AND e.code = $2
             AND e.ts BETWEEN w.low AND w.high
UNION ALL
SELECT 2, keys, field_name, NULL, NULL, NULL, NULL FROM rollup_specs WHERE code = $2
"""


class Aggregated(msgspec.Struct, frozen=True):
    """An aggregate's groups and the spec the rollups were found built with (if read)."""

    groups: list[GroupAggregate]
    recorded: RollupSpec | None
    stale: bool


def split_arrays(split: Split) -> tuple[list[int], ...]:
    """A split as the ``$3``..``$7`` arrays of the split statements (here and ``postgres_series``):
    the rollup ranges' grains, firsts and ends, then the raw ranges' lows and highs."""
    return (
        [grain for grain, _, _ in split.rollups],
        [MIN_TS if first is None else first for _, first, _ in split.rollups],
        [end for _, _, end in split.rollups],
        [first for first, _ in split.raw],
        [last for _, last in split.raw],
    )


async def _raw(
    conn: Conn, query: AggregateQuery, low: int, high: int, codec: JsonCodec
) -> list[GroupAggregate]:
    rows = await conn.fetch(_RAW, query.external_subscription_id, query.code, low, high)
    return scan_groups((codec.decode_properties(text) for (text,) in rows), query)


async def aggregate(
    conn: Conn, query: AggregateQuery, spec: RollupSpec | None, codec: JsonCodec
) -> Aggregated:
    """Count, sum and max per group; whole buckets from rollups when ``spec`` covers the query.

    ``stale`` tells the caller that the rollups were built with another spec than ``spec``
    (``recorded``): the groups were then read raw, and the caller should refresh its spec.
    """
    low, high = bounds(query)
    if low > high:
        return Aggregated([], spec, stale=False)
    split = None
    if spec is not None and spec.covers(query):
        split = split_range(None if query.from_ts is None else low, high)
    if spec is None or split is None:
        return Aggregated(await _raw(conn, query, low, high, codec), spec, stale=False)
    sub, code = query.external_subscription_id, query.code
    try:
        rows = await conn.fetch(_SPLIT, sub, code, *split_arrays(split))
    except asyncpg.NumericValueOutOfRangeError:  # rollup numbers no domain sum reaches
        return Aggregated(await _raw(conn, query, low, high, codec), spec, stale=False)
    recorded = [decode_spec(row[2], row[1]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # Another replica rebuilt the rollups under another spec: read raw this time.
        groups = await _raw(conn, query, low, high, codec)
        return Aggregated(groups, recorded[0] if recorded else None, stale=True)
    try:
        groups = _fold_split(rows, query, spec, codec)
    except UnreadableRollup:  # NaN, infinity, or a sum of values outside the domain
        groups = await _raw(conn, query, low, high, codec)
    return Aggregated(groups, spec, stale=False)


def _fold_split(
    rows: Sequence[asyncpg.Record], query: AggregateQuery, spec: RollupSpec, codec: JsonCodec
) -> list[GroupAggregate]:
    project = DimsProjection(spec, query.group_keys)
    with_numbers = query.field_name is not None
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    for kind, text, _, events, numeric_events, total, maximum in rows:
        if kind == 0:
            group = project(text)
            if with_numbers:
                folder.add_partial(
                    group,
                    events,
                    numeric_events,
                    rollup_number(total),
                    None if maximum is None else rollup_number(maximum, VALUE_LIMIT),
                )
            else:
                folder.add_partial(group, events, 0, Decimal(0), None)
        elif kind == 1:
            properties = codec.decode_properties(text)
            folder.add_event(
                group_values(properties, query.group_keys),
                event_value(properties, query.field_name),
            )
    return group_results(folder)
