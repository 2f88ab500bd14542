"""Event reads of the SQLite adapter: aggregation (rollups + raw edges) and event listings."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import aiosqlite
import msgspec

from metering.errors import NotFound
from metering.models import Event
from metering.ports import AggregateQuery, GroupAggregate
from metering.store.codec import JsonCodec, from_micros, to_micros
from metering.store.folding import GroupFolder, group_results
from metering.store.rollups import HOUR_US, RollupSpec, event_value, group_values, split_range
from metering.store.sqlite_events import decode_spec

__all__ = ["aggregate", "get_event", "list_events"]

_MIN_TS = -(2**63)

_EVENT_COLUMNS = (
    "id, transaction_id, external_subscription_id, code, ts, properties, created_us, "
    "precise_total_amount_cents"
)

_RAW = (
    "SELECT properties FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)

# One statement, hence one snapshot: whole buckets from rollups (kind 0; up to five ranges:
# months, the days before and after them, the hours before and after those), the partial edge
# hours from raw events (kind 1; up to two ranges) and the spec the rollups were built with
# (kind 2), so a concurrent rebuild can never be read with a stale idea of the dims. Unused
# ranges are passed empty.
_ROLLUP_PART = (
    "SELECT 0, dims, events, numeric_events, total, maximum FROM rollups "
    "WHERE code = ? AND external_subscription_id = ? AND grain = ? AND bucket >= ? AND bucket < ?"
)
_RAW_PART = (
    "SELECT 1, properties, NULL, NULL, NULL, NULL FROM events "
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ?"
)
_SPEC_PART = "SELECT 2, keys, field_name, NULL, NULL, NULL FROM rollup_specs WHERE code = ?"
_ROLLUP_PARTS = 5
_RAW_PARTS = 2
_SPLIT = " UNION ALL ".join(
    [_ROLLUP_PART] * _ROLLUP_PARTS + [_RAW_PART] * _RAW_PARTS + [_SPEC_PART]
)


async def _raw(
    conn: aiosqlite.Connection, query: AggregateQuery, low: int, high: int, codec: JsonCodec
) -> list[GroupAggregate]:
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    params = (query.external_subscription_id, query.code, low, high)
    for (text,) in await conn.execute_fetchall(_RAW, params):
        properties = codec.decode_properties(text)
        folder.add_event(
            group_values(properties, query.group_keys), event_value(properties, query.field_name)
        )
    return group_results(folder)


async def aggregate(
    conn: aiosqlite.Connection, query: AggregateQuery, spec: RollupSpec | None, codec: JsonCodec
) -> list[GroupAggregate]:
    """Count, sum and max per group; whole buckets from rollups when ``spec`` covers the query."""
    low = _MIN_TS if query.from_ts is None else to_micros(query.from_ts)
    high = to_micros(query.to_ts)
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
        params += (code, sub, grain, _MIN_TS if first is None else first, end)
    for first, last in list(split.raw) + [(1, 0)] * (_RAW_PARTS - len(split.raw)):
        params += (sub, code, first, last)
    params.append(code)
    rows = list(await conn.execute_fetchall(_SPLIT, params))
    recorded = [decode_spec(row[2], row[1]) for row in rows if row[0] == 2]
    if recorded != [spec]:
        # The rollups were rebuilt under another spec since the caller looked: read raw.
        return await _raw(conn, query, low, high, codec)
    return _fold_split(rows, query, spec, codec)


def _fold_split(
    rows: Sequence[Any], query: AggregateQuery, spec: RollupSpec, codec: JsonCodec
) -> list[GroupAggregate]:
    positions = [spec.keys.index(key) for key in query.group_keys]
    with_numbers = query.field_name is not None
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    projected: dict[str, tuple[str | None, ...]] = {}  # dims repeat across hours: decode once
    for kind, text, events, numeric_events, total, maximum in rows:
        if kind == 0:
            group = projected.get(text)
            if group is None:
                dims = msgspec.json.decode(text, type=tuple[str | None, ...])
                group = projected[text] = tuple(dims[i] for i in positions)
            if with_numbers:
                # INTEGER columns fold as ints; TEXT ones are exact decimals.
                folder.add_partial(
                    group,
                    events,
                    numeric_events,
                    total if type(total) is int else Decimal(total),
                    maximum if maximum is None or type(maximum) is int else Decimal(maximum),
                )
            else:
                folder.add_partial(group, events, 0, 0, None)
        elif kind == 1:
            properties = codec.decode_properties(text)
            folder.add_event(
                group_values(properties, query.group_keys),
                event_value(properties, query.field_name),
            )
    return group_results(folder)


def _event(row: Sequence[Any], codec: JsonCodec) -> Event:
    return Event(
        id=row[0],
        transaction_id=row[1],
        external_subscription_id=row[2],
        code=row[3],
        timestamp=from_micros(row[4]),
        properties=codec.decode_properties(row[5]),
        created_at=from_micros(row[6]),
        precise_total_amount_cents=row[7],
    )


async def list_events(
    conn: aiosqlite.Connection,
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
        "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ? "
        "ORDER BY ts, created_us, seq"
    )
    params = (external_subscription_id, code, _MIN_TS if low is None else low, high)
    return [_event(row, codec) for row in await conn.execute_fetchall(sql, params)]


async def get_event(
    conn: aiosqlite.Connection,
    codec: JsonCodec,
    *,
    transaction_id: str,
    external_subscription_id: str | None,
) -> Event:
    """The event by transaction id (and subscription); the first stored one otherwise."""
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE transaction_id = ?"  # noqa: S608
    params: tuple[str, ...] = (transaction_id,)
    if external_subscription_id is not None:
        sql += " AND external_subscription_id = ?"
        params = (transaction_id, external_subscription_id)
    rows = list(await conn.execute_fetchall(sql + " ORDER BY seq LIMIT 1", params))
    if not rows:
        raise NotFound("event")
    return _event(rows[0], codec)
