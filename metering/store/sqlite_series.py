"""Usage time series of the SQLite adapter: whole windows from rollups, partial edges from events.

Like :func:`metering.store.sqlite_query.aggregate`, one statement (hence one snapshot) reads
the rollup ranges, the raw edge ranges and the spec the rollups were built with; rows carry
their bucket (rollups) or timestamp (events) so each lands in its window. The cost grows with
the number of windows and groups, not with the number of events.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from metering.ports import AggregateQuery, Window, WindowAggregate
from metering.store.codec import JsonCodec
from metering.store.folding import GroupFolder, UnreadableRollup, rollup_number
from metering.store.rollups import (
    DimsProjection,
    RollupSpec,
    bucket_start,
    event_value,
    group_values,
)
from metering.store.scan import scan_series
from metering.store.series import SeriesKey, series_results, series_split, window_micros
from metering.store.sql_reads import MIN_TS, bounds
from metering.store.sqlite_events import decode_spec
from metering.store.sqlite_tail import outside
from metering.values import VALUE_LIMIT

__all__ = ["aggregate_series"]

_ROLLUP_PART = (
    "SELECT 0, bucket, dims, events, numeric_events, total, maximum FROM rollups "
    "WHERE code = ? AND external_subscription_id = ? AND grain = ? AND bucket >= ? AND bucket < ?"
)
_RAW_PART = (
    "SELECT 1, ts, properties, NULL, NULL, NULL, NULL FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)
_SPEC_PART = "SELECT 2, NULL, keys, field_name, NULL, NULL, NULL FROM rollup_specs WHERE code = ?"
# Events not yet folded into the rollups (sqlite_tail); those inside the raw ranges are
# counted there already.
_TAIL_PART = (
    "SELECT 3, ts, properties, NULL, NULL, NULL, NULL FROM events NOT INDEXED "
    "WHERE seq > (SELECT folded_seq FROM rollup_state) "
    "AND external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)
_RAW = (
    "SELECT ts, properties FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)


async def _raw(
    conn: aiosqlite.Connection,
    query: AggregateQuery,
    grain: int,
    low: int,
    high: int,
    codec: JsonCodec,
) -> list[WindowAggregate]:
    params = (query.external_subscription_id, query.code, low, high)
    rows = await conn.execute_fetchall(_RAW, params)
    return scan_series(((ts, codec.decode_properties(text)) for ts, text in rows), query, grain)


async def aggregate_series(
    conn: aiosqlite.Connection,
    query: AggregateQuery,
    window: Window,
    spec: RollupSpec | None,
    codec: JsonCodec,
) -> list[WindowAggregate]:
    """Count, sum and max per window and group (``Store.aggregate_series``)."""
    grain = window_micros(window)
    low, high = bounds(query)
    if low > high:
        return []
    if spec is None or not spec.covers(query):
        return await _raw(conn, query, grain, low, high, codec)
    split = series_split(None if query.from_ts is None else low, high, grain)
    sub, code = query.external_subscription_id, query.code
    params: list[object] = []
    for rollup_grain, first, end in split.rollups:
        params += (code, sub, rollup_grain, MIN_TS if first is None else first, end)
    for first, last in split.raw:
        params += (sub, code, first, last)
    params += (code, sub, code, low, high)
    sql = " UNION ALL ".join(
        [_ROLLUP_PART] * len(split.rollups)
        + [_RAW_PART] * len(split.raw)
        + [_SPEC_PART, _TAIL_PART]
    )
    rows = list(await conn.execute_fetchall(sql, params))
    recorded = [decode_spec(row[3], row[2]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # The rollups were rebuilt under another spec since the caller looked: read raw.
        return await _raw(conn, query, grain, low, high, codec)
    try:
        return _fold(rows, query, spec, grain, tuple(split.raw), codec)
    except UnreadableRollup:  # a number no version could have summed: the events decide
        return await _raw(conn, query, grain, low, high, codec)


def _fold(
    rows: Sequence[Any],
    query: AggregateQuery,
    spec: RollupSpec,
    grain: int,
    raw: tuple[tuple[int, int], ...],
    codec: JsonCodec,
) -> list[WindowAggregate]:
    project = DimsProjection(spec, query.group_keys)
    with_numbers = query.field_name is not None
    folder: GroupFolder[SeriesKey] = GroupFolder()
    for kind, moment, text, events, numeric_events, total, maximum in rows:
        if kind == 0:
            group = project(text)
            key = (bucket_start(moment, grain), group)
            if with_numbers:
                # INTEGER columns come back as int and stay on the fold's int fast path;
                # TEXT ones are exact decimals (anything else: UnreadableRollup).
                folder.add_partial(
                    key,
                    events,
                    numeric_events,
                    total if type(total) is int else rollup_number(total),
                    None if maximum is None else rollup_number(maximum, VALUE_LIMIT),
                )
            else:
                folder.add_partial(key, events, 0, 0, None)
        elif kind == 1 or (kind == 3 and outside(moment, raw)):
            properties = codec.decode_properties(text)
            folder.add_event(
                (bucket_start(moment, grain), group_values(properties, query.group_keys)),
                event_value(properties, query.field_name),
            )
    return series_results(folder)
