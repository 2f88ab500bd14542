"""Event reads of the PostgreSQL adapter: aggregation (rollups + raw edges) and event listings.

As in the SQLite adapter, an aggregate is ONE statement, hence one snapshot: whole buckets
from rollups, the partial edge hours from raw events, and the spec the rollups were built
with, so a rebuild committed by another replica is never read with a stale idea of the dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg
import msgspec

from metering.errors import NotFound
from metering.models import Event
from metering.ports import AggregateQuery, GroupAggregate
from metering.store.codec import JsonCodec, event_from_row, to_micros
from metering.store.folding import GroupFolder, group_results
from metering.store.postgres_schema import Conn
from metering.store.rollups import (
    DimsProjection,
    RollupSpec,
    decode_spec,
    event_value,
    group_values,
    split_range,
)

__all__ = ["aggregate", "get_event", "list_events"]

_MIN_TS = -(2**63)

_EVENT_COLUMNS = (
    "id, transaction_id, external_subscription_id, code, ts, properties, created_us, "
    "precise_total_amount_cents"
)

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


async def _raw(
    conn: Conn, query: AggregateQuery, low: int, high: int, codec: JsonCodec
) -> list[GroupAggregate]:
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    for (text,) in await conn.fetch(_RAW, query.external_subscription_id, query.code, low, high):
        properties = codec.decode_properties(text)
        folder.add_event(
            group_values(properties, query.group_keys), event_value(properties, query.field_name)
        )
    return group_results(folder)


async def aggregate(
    conn: Conn, query: AggregateQuery, spec: RollupSpec | None, codec: JsonCodec
) -> Aggregated:
    """Count, sum and max per group; whole buckets from rollups when ``spec`` covers the query.

    ``stale`` tells the caller that the rollups were built with another spec than ``spec``
    (``recorded``): the groups were then read raw, and the caller should refresh its spec.
    """
    low = _MIN_TS if query.from_ts is None else to_micros(query.from_ts)
    high = to_micros(query.to_ts)
    if low > high:
        return Aggregated([], spec, stale=False)
    split = None
    if spec is not None and spec.covers(query):
        split = split_range(None if query.from_ts is None else low, high)
    if spec is None or split is None:
        return Aggregated(await _raw(conn, query, low, high, codec), spec, stale=False)
    rows = await conn.fetch(
        _SPLIT,
        query.external_subscription_id,
        query.code,
        [grain for grain, _, _ in split.rollups],
        [_MIN_TS if first is None else first for _, first, _ in split.rollups],
        [end for _, _, end in split.rollups],
        [first for first, _ in split.raw],
        [last for _, last in split.raw],
    )
    recorded = [decode_spec(row[2], row[1]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # Another replica rebuilt the rollups under another spec: read raw this time.
        groups = await _raw(conn, query, low, high, codec)
        return Aggregated(groups, recorded[0] if recorded else None, stale=True)
    return Aggregated(_fold_split(rows, query, spec, codec), spec, stale=False)


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
                folder.add_partial(group, events, numeric_events, total, maximum)
            else:
                folder.add_partial(group, events, 0, Decimal(0), None)
        elif kind == 1:
            properties = codec.decode_properties(text)
            folder.add_event(
                group_values(properties, query.group_keys),
                event_value(properties, query.field_name),
            )
    return group_results(folder)


async def list_events(
    conn: Conn,
    codec: JsonCodec,
    *,
    external_subscription_id: str,
    code: str,
    low: int | None,
    high: int,
) -> list[Event]:
    """Events of one stream with ``low <= ts <= high``, in (timestamp, created_at) order."""
    sql = (
        f"SELECT {_EVENT_COLUMNS} FROM events "  # noqa: S608 - fixed text
        "WHERE external_subscription_id = $1 AND code = $2 AND ts BETWEEN $3 AND $4 "
        "ORDER BY ts, created_us, seq"
    )
    rows = await conn.fetch(
        sql, external_subscription_id, code, _MIN_TS if low is None else low, high
    )
    return [event_from_row(row, codec) for row in rows]


async def get_event(
    conn: Conn,
    codec: JsonCodec,
    *,
    transaction_id: str,
    external_subscription_id: str | None,
) -> Event:
    """The event by transaction id (and subscription); the first stored one otherwise."""
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE transaction_id = $1"  # noqa: S608
    params: tuple[str, ...] = (transaction_id,)
    if external_subscription_id is not None:
        sql += " AND external_subscription_id = $2"
        params = (transaction_id, external_subscription_id)
    row = await conn.fetchrow(sql + " ORDER BY seq LIMIT 1", *params)
    if row is None:
        raise NotFound("event")
    return event_from_row(row, codec)
