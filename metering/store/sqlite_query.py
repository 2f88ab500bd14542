"""Aggregates of the SQLite adapter: whole buckets from rollups, raw edges from events."""

from __future__ import annotations

import decimal
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from metering.ports import AggregateQuery, GroupAggregate
from metering.store.codec import JsonCodec
from metering.store.folding import (
    GroupFolder,
    Number,
    UnreadableRollup,
    exact_context,
    group_results,
    rollup_number,
)
from metering.store.rollups import (
    HOUR_US,
    DimsProjection,
    RollupSpec,
    event_value,
    group_values,
    split_range,
)
from metering.store.scan import scan_groups
from metering.store.sql_reads import MIN_TS, bounds
from metering.store.sqlite_events import decode_spec
from metering.store.sqlite_tail import outside
from metering.values import VALUE_LIMIT

__all__ = ["aggregate"]

_RAW = (
    "SELECT properties FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)

# One statement, hence one snapshot: whole buckets from rollups (kind 0; up to five ranges:
# months, the days before and after them, the hours before and after those), the partial edge
# hours from raw events (kind 1; up to two ranges) and the spec the rollups were built with
# (kind 2), so a concurrent rebuild can never be read with a stale idea of the dims. Unused
# ranges are passed empty.
#
# SQLite folds each range per dims itself (a period of day rows is thousands of rows, and
# Python would fold each): INTEGER totals and maxima with SUM/MAX, the exact TEXT ones (not
# small whole numbers, see sqlite_events) passed through group_concat for Python to add.
# Any other type (never written by tallygate) goes there too, so that Python sees it and
# reads raw (folding.rollup_number) rather than leaving it out of the sum.
# SUM raises "integer overflow" past int64; the statement is then re-run without grouping.
_TOTALS = (
    "{agg}(CASE WHEN typeof(total) = 'integer' THEN total END), "
    "{cat}(CASE WHEN typeof(total) != 'integer' THEN total END{sep}), "
    "{max}(CASE WHEN typeof(maximum) = 'integer' THEN maximum END), "
    "{cat}(CASE WHEN typeof(maximum) NOT IN ('integer', 'null') THEN maximum END{sep})"
)
_RANGE = (
    "FROM rollups WHERE code = ? AND external_subscription_id = ? AND grain = ? "
    "AND bucket >= ? AND bucket < ?"
)
_GROUPED_PART = (
    "SELECT 0, dims, SUM(events), SUM(numeric_events), "
    + _TOTALS.format(agg="SUM", cat="group_concat", max="MAX", sep=", ' '")
    + f" {_RANGE} GROUP BY dims"
)
_ROW_PART = (
    "SELECT 0, dims, events, numeric_events, "
    + _TOTALS.format(agg="", cat="", max="", sep="")
    + f" {_RANGE}"
)
_RAW_PART = (
    "SELECT 1, properties, NULL, NULL, NULL, NULL, NULL, NULL FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)
_SPEC_PART = (
    "SELECT 2, keys, field_name, NULL, NULL, NULL, NULL, NULL FROM rollup_specs WHERE code = ?"
)
# Events not yet folded into the rollups (sqlite_tail), with their timestamps: those inside
# the raw ranges are counted there already.
_TAIL_PART = (
    "SELECT 3, properties, ts, NULL, NULL, NULL, NULL, NULL FROM events NOT INDEXED "
    "WHERE seq > (SELECT folded_seq FROM rollup_state) "
    "AND external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)
_ROLLUP_PARTS = 5
_RAW_PARTS = 2
_SPLIT_GROUPED, _SPLIT_ROWS = (
    " UNION ALL ".join([part] * _ROLLUP_PARTS + [_RAW_PART] * _RAW_PARTS + [_SPEC_PART, _TAIL_PART])
    for part in (_GROUPED_PART, _ROW_PART)
)


async def _raw(
    conn: aiosqlite.Connection, query: AggregateQuery, low: int, high: int, codec: JsonCodec
) -> list[GroupAggregate]:
    params = (query.external_subscription_id, query.code, low, high)
    rows = await conn.execute_fetchall(_RAW, params)
    return scan_groups((codec.decode_properties(text) for (text,) in rows), query)


async def aggregate(
    conn: aiosqlite.Connection, query: AggregateQuery, spec: RollupSpec | None, codec: JsonCodec
) -> list[GroupAggregate]:
    """Count, sum and max per group; whole buckets from rollups when ``spec`` covers the query."""
    low, high = bounds(query)
    if low > high:
        return []
    if spec is None or not spec.covers(query):
        return await _raw(conn, query, low, high, codec)
    split = split_range(None if query.from_ts is None else low, high)
    if split is None:
        return await _raw(conn, query, low, high, codec)
    sub, code = query.external_subscription_id, query.code
    params: list[object] = []
    rollups = list(split.rollups) + [(HOUR_US, 1, 0)] * (_ROLLUP_PARTS - len(split.rollups))
    for grain, first, end in rollups:
        params += (code, sub, grain, MIN_TS if first is None else first, end)
    for first, last in list(split.raw) + [(1, 0)] * (_RAW_PARTS - len(split.raw)):
        params += (sub, code, first, last)
    params += (code, sub, code, low, high)
    try:
        rows = list(await conn.execute_fetchall(_SPLIT_GROUPED, params))
    except sqlite3.OperationalError as error:
        if "integer overflow" not in str(error):
            raise
        rows = list(await conn.execute_fetchall(_SPLIT_ROWS, params))
    recorded = [decode_spec(row[2], row[1]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # The rollups were rebuilt under another spec since the caller looked: read raw.
        return await _raw(conn, query, low, high, codec)
    try:
        return _fold_split(rows, query, spec, split.raw, codec)
    except UnreadableRollup:
        return await _raw(conn, query, low, high, codec)


def _pieces(texts: object) -> list[object]:
    # group_concat's list (grouped statement) or the column itself (per-row statement).
    if texts is None:
        return []
    return list(texts.split(" ")) if isinstance(texts, str) else [texts]


def _texts(ctx: decimal.Context, number: Number | None, texts: object) -> Number:
    # An INTEGER column's SUM (None: no such row) plus the TEXT decimals group_concat listed.
    total = 0 if number is None else number
    for text in _pieces(texts):
        total = ctx.add(total, rollup_number(text))
    return total


def _highest(number: int | None, texts: object) -> Number | None:
    candidates: list[Number] = [] if number is None else [number]
    candidates += [rollup_number(text, VALUE_LIMIT) for text in _pieces(texts)]
    return max(candidates) if candidates else None


def _fold_split(
    rows: Sequence[Any],
    query: AggregateQuery,
    spec: RollupSpec,
    raw: tuple[tuple[int, int], ...],
    codec: JsonCodec,
) -> list[GroupAggregate]:
    project = DimsProjection(spec, query.group_keys)
    with_numbers = query.field_name is not None
    ctx = exact_context()
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    for kind, text, events, numeric_events, total, totals, maximum, maxima in rows:
        if kind == 0:
            group = project(text)
            if with_numbers:
                folder.add_partial(
                    group,
                    events,
                    numeric_events,
                    _texts(ctx, total, totals),
                    _highest(maximum, maxima),
                )
            else:
                folder.add_partial(group, events, 0, 0, None)
        elif kind == 1 or (kind == 3 and outside(events, raw)):  # a tail row: events = ts
            properties = codec.decode_properties(text)
            folder.add_event(
                group_values(properties, query.group_keys),
                event_value(properties, query.field_name),
            )
    return group_results(folder)
