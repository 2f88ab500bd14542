"""Usage time series of the PostgreSQL adapter: whole windows from rollups, edges from events.

As :func:`metering.store.postgres_query.aggregate`: one statement (one snapshot) reads the
rollup ranges, the raw edge ranges and the spec the rollups were built with; rows carry their
bucket (rollups) or timestamp (events) so each lands in its window.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg
import msgspec

from metering.ports import AggregateQuery, Window, WindowAggregate
from metering.store.codec import JsonCodec
from metering.store.folding import GroupFolder, UnreadableRollup, rollup_number
from metering.store.postgres_query import split_arrays
from metering.store.postgres_schema import Conn
from metering.store.rollups import (
    DimsProjection,
    RollupSpec,
    bucket_start,
    decode_spec,
    event_value,
    group_values,
)
from metering.store.scan import scan_series
from metering.store.series import SeriesKey, series_results, series_split, window_micros
from metering.store.sql_reads import bounds
from metering.values import VALUE_LIMIT

__all__ = ["Series", "aggregate_series"]

_RAW = (
    "SELECT ts, properties FROM events "
    "WHERE external_subscription_id = $1 AND code = $2 AND ts BETWEEN $3 AND $4"
)

_SPLIT = """
SELECT 0 AS kind, r.bucket AS moment, r.dims AS text, NULL::text AS extra, r.events,
       r.numeric_events, r.total, r.maximum
FROM unnest($3::int8[], $4::int8[], $5::int8[]) AS g(grain, first, stop)
JOIN rollups r ON r.code = $2 AND r.external_subscription_id = $1 AND r.grain = g.grain
              AND r.bucket >= g.first AND r.bucket < g.stop
UNION ALL
SELECT 1, e.ts, e.properties, NULL, NULL, NULL, NULL, NULL
FROM unnest($6::int8[], $7::int8[]) AS w(low, high)
JOIN events e ON e.external_subscription_id = $1 AND e.code = $2
             AND e.ts BETWEEN w.low AND w.high
UNION ALL
SELECT 2, NULL, keys, field_name, NULL, NULL, NULL, NULL FROM rollup_specs WHERE code = $2
"""


class Series(msgspec.Struct, frozen=True):
    """A series and the spec the rollups were found built with (see ``Aggregated``)."""

    windows: list[WindowAggregate]
    recorded: RollupSpec | None
    stale: bool


async def _raw(
    conn: Conn, query: AggregateQuery, grain: int, low: int, high: int, codec: JsonCodec
) -> list[WindowAggregate]:
    rows = await conn.fetch(_RAW, query.external_subscription_id, query.code, low, high)
    return scan_series(((ts, codec.decode_properties(text)) for ts, text in rows), query, grain)


async def aggregate_series(
    conn: Conn,
    query: AggregateQuery,
    window: Window,
    spec: RollupSpec | None,
    codec: JsonCodec,
) -> Series:
    """Count, sum and max per window and group (``Store.aggregate_series``)."""
    grain = window_micros(window)
    low, high = bounds(query)
    if low > high:
        return Series([], spec, stale=False)
    if spec is None or not spec.covers(query):
        return Series(await _raw(conn, query, grain, low, high, codec), spec, stale=False)
    split = series_split(None if query.from_ts is None else low, high, grain)
    sub, code = query.external_subscription_id, query.code
    try:
        rows = await conn.fetch(_SPLIT, sub, code, *split_arrays(split))
    except asyncpg.NumericValueOutOfRangeError:  # rollup numbers no domain sum reaches
        return Series(await _raw(conn, query, grain, low, high, codec), spec, stale=False)
    recorded = [decode_spec(row[3], row[2]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # Another replica rebuilt the rollups under another spec: read raw this time.
        windows = await _raw(conn, query, grain, low, high, codec)
        return Series(windows, recorded[0] if recorded else None, stale=True)
    try:
        windows = _fold(rows, query, spec, grain, codec)
    except UnreadableRollup:  # NaN, infinity, or a sum of values outside the domain
        windows = await _raw(conn, query, grain, low, high, codec)
    return Series(windows, spec, stale=False)


def _fold(
    rows: Sequence[asyncpg.Record],
    query: AggregateQuery,
    spec: RollupSpec,
    grain: int,
    codec: JsonCodec,
) -> list[WindowAggregate]:
    project = DimsProjection(spec, query.group_keys)
    with_numbers = query.field_name is not None
    folder: GroupFolder[SeriesKey] = GroupFolder()
    for kind, moment, text, _, events, numeric_events, total, maximum in rows:
        if kind == 0:
            group = project(text)
            key = (bucket_start(moment, grain), group)
            if with_numbers:
                folder.add_partial(
                    key,
                    events,
                    numeric_events,
                    rollup_number(total),
                    None if maximum is None else rollup_number(maximum, VALUE_LIMIT),
                )
            else:
                folder.add_partial(key, events, 0, Decimal(0), None)
        elif kind == 1:
            properties = codec.decode_properties(text)
            folder.add_event(
                (bucket_start(moment, grain), group_values(properties, query.group_keys)),
                event_value(properties, query.field_name),
            )
    return series_results(folder)
