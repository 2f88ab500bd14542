"""Event writes of the SQLite adapter: idempotent inserts and the rollups kept beside them.

Everything here runs inside the caller's write transaction. Duplicates are decided by the
UNIQUE constraint alone (``INSERT OR IGNORE ... RETURNING`` tells which rows went in), never by
reading first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal

import aiosqlite
import msgspec

from metering.models import Event
from metering.ports import BatchResult, DuplicatePolicy, EventBatch
from metering.store.codec import EventRow, JsonCodec, event_row
from metering.store.folding import (
    GroupFolder,
    Number,
    UnreadableRollup,
    exact_context,
    rollup_number,
)
from metering.store.rollups import RollupKey, RollupSpec, add_to_rollups, coarser
from metering.values import VALUE_LIMIT

__all__ = [
    "UNREADABLE",
    "StoredDecimal",
    "add_rollups",
    "changed_specs",
    "decimal_functions",
    "decode_spec",
    "load_specs",
    "rebuild_rollups",
    "stored_params",
    "to_stored",
    "upsert_rollups",
    "write_batch",
]

_COLUMNS = (
    "transaction_id, external_subscription_id, code, ts, created_us, id, properties, "
    "precise_total_amount_cents"
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per INSERT statement: 8 parameters each stays far below SQLite's 32766 variables.
_CHUNK = 500

# Totals and maxima are stored as SQL INTEGER when they are small whole numbers (the usual
# token counts), so SQLite adds and compares them itself; any other value is decimal TEXT and
# goes through the exact Python functions. Below 2**62 a sum of two cannot overflow int64.
_SMALL = 2**62
_UPSERT_ROLLUP = """
INSERT INTO rollups (code, external_subscription_id, grain, bucket, dims, events,
                     numeric_events, total, maximum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (code, external_subscription_id, grain, bucket, dims) DO UPDATE SET
  events = events + excluded.events,
  numeric_events = numeric_events + excluded.numeric_events,
  total = CASE
    WHEN typeof(total) = 'integer' AND typeof(excluded.total) = 'integer'
         AND abs(total) < 4611686018427387904 AND abs(excluded.total) < 4611686018427387904
      THEN total + excluded.total
    ELSE decimal_add(total, excluded.total) END,
  maximum = CASE
    WHEN maximum IS NULL THEN excluded.maximum
    WHEN excluded.maximum IS NULL THEN maximum
    WHEN typeof(maximum) = 'integer' AND typeof(excluded.maximum) = 'integer'
      THEN max(maximum, excluded.maximum)
    ELSE decimal_max(maximum, excluded.maximum) END
"""


#: A decimal as stored in a rollup column: INTEGER when small and whole, else TEXT.
StoredDecimal = int | str
#: What a rollup column holds once it absorbed a number it could not read (never a decimal).
UNREADABLE = "NaN"


def to_stored(value: Number) -> StoredDecimal:
    """The column value of a decimal; INTEGER only if that loses nothing (not even "1.0")."""
    if type(value) is int:
        return value if -_SMALL < value < _SMALL else str(value)
    assert isinstance(value, Decimal)
    exponent = value.as_tuple().exponent
    # A comparison, not abs(): abs() rounds in the thread's context and overflows there.
    if exponent == 0 and -_SMALL < value < _SMALL:
        return int(value)
    return str(value)


def decimal_functions() -> tuple[
    Callable[[StoredDecimal, StoredDecimal], StoredDecimal],
    Callable[[StoredDecimal, StoredDecimal], StoredDecimal],
]:
    """The ``decimal_add`` and ``decimal_max`` SQL functions over stored decimals, exact.

    Made per connection: they share one wide decimal context (contexts are mutable, so none
    lives at module level). A stored number that :func:`~metering.store.folding.rollup_number`
    cannot read (written by an older version, or not by tallygate at all) never fails the
    write: the row's value becomes :data:`UNREADABLE`, which readers answer from raw events.
    """
    ctx = exact_context()

    def decimal_add(left: StoredDecimal, right: StoredDecimal) -> StoredDecimal:
        try:
            return to_stored(ctx.add(rollup_number(left), rollup_number(right)))
        except UnreadableRollup:
            return UNREADABLE

    def decimal_max(left: StoredDecimal, right: StoredDecimal) -> StoredDecimal:
        try:
            if rollup_number(right, VALUE_LIMIT) > rollup_number(left, VALUE_LIMIT):
                return right
        except UnreadableRollup:
            return UNREADABLE
        return left

    return decimal_add, decimal_max


def _insert(db: sqlite3.Connection, params: Sequence[EventRow]) -> set[tuple[str, str]]:
    """Insert what the constraint allows; the (transaction, subscription) keys inserted."""
    inserted: set[tuple[str, str]] = set()
    for start in range(0, len(params), _CHUNK):
        chunk = params[start : start + _CHUNK]
        sql = (
            f"INSERT OR IGNORE INTO events ({_COLUMNS}) VALUES "  # noqa: S608 - fixed text
            f"{', '.join([_ROW] * len(chunk))} "
            "RETURNING transaction_id, external_subscription_id"
        )
        flat = [value for row in chunk for value in row]
        inserted.update((row[0], row[1]) for row in db.execute(sql, flat).fetchall())
    return inserted


def write_batch(
    db: sqlite3.Connection, batch: EventBatch, params: Sequence[EventRow], name: str
) -> tuple[BatchResult, list[Event]]:
    """Store one batch atomically inside the open transaction; returns the events stored.

    Synchronous, on the plain connection: it runs on the connection's thread inside
    :func:`~metering.store.sqlite_connection.transaction_in_thread`.

    ``name`` is the batch's savepoint: a REJECT batch with a duplicate rolls back to it, so
    the other batches of the transaction are unaffected. A SKIP batch never undoes anything,
    so it needs none (a failing statement aborts the whole transaction anyway).
    """
    reject = batch.policy is DuplicatePolicy.REJECT
    if reject:
        db.execute(f"SAVEPOINT {name}")
    inserted = _insert(db, params)
    stored: list[Event] = []
    duplicates: list[int] = []
    for index, event in enumerate(batch.events):
        key = (event.transaction_id, event.external_subscription_id)
        if key in inserted:
            inserted.discard(key)  # a later copy in the same batch is a duplicate
            stored.append(event)
        else:
            duplicates.append(index)
    if reject:
        if duplicates:
            db.execute(f"ROLLBACK TO {name}")
        db.execute(f"RELEASE {name}")
        if duplicates:
            return BatchResult(stored=False, inserted=0, duplicates=tuple(duplicates)), []
    result = BatchResult(stored=True, inserted=len(stored), duplicates=tuple(duplicates))
    return result, stored


def _rollup_rows(hours: GroupFolder[RollupKey]) -> list[tuple[object, ...]]:
    """UPSERT parameters of the hour increments and the day and month increments they make."""
    return [
        (
            *key,
            fold.events,
            fold.numeric_events,
            to_stored(fold.total),
            None if fold.maximum is None else to_stored(fold.maximum),
        )
        for deltas in (hours, *coarser(hours))
        for key, fold in deltas.items()
    ]


def add_rollups(db: sqlite3.Connection, hours: GroupFolder[RollupKey]) -> None:
    """Add hour increments (and their days and months) to the rollup rows (sync, in thread)."""
    if len(hours):
        db.executemany(_UPSERT_ROLLUP, _rollup_rows(hours))


async def upsert_rollups(conn: aiosqlite.Connection, hours: GroupFolder[RollupKey]) -> None:
    """Add hour increments, and the day and month increments they make, to the rollup rows."""
    if len(hours):
        await conn.executemany(_UPSERT_ROLLUP, _rollup_rows(hours))


async def rebuild_rollups(
    conn: aiosqlite.Connection, code: str, spec: RollupSpec | None, codec: JsonCodec
) -> None:
    """Recompute ``code``'s rollups from its raw events under ``spec`` and record the spec.

    ``spec`` None drops the code's rollups (its metric is gone). Costs one pass over the
    code's events; it runs only when a metric's field or filter keys change.
    """
    await conn.execute("DELETE FROM rollups WHERE code = ?", (code,))
    if spec is None:
        await conn.execute("DELETE FROM rollup_specs WHERE code = ?", (code,))
        return
    await conn.execute(
        "INSERT OR REPLACE INTO rollup_specs (code, field_name, keys) VALUES (?, ?, ?)",
        (code, spec.field_name, codec.encode_text(spec.keys)),
    )
    deltas: GroupFolder[RollupKey] = GroupFolder()
    # Only the folded events: the tail (seq > folded_seq) is folded later under the new spec.
    async with conn.execute(
        "SELECT external_subscription_id, ts, properties FROM events "
        "WHERE code = ? AND seq <= (SELECT folded_seq FROM rollup_state)",
        (code,),
    ) as cursor:
        async for subscription, ts, text in cursor:
            add_to_rollups(deltas, code, subscription, ts, codec.decode_properties(text), spec)
    await upsert_rollups(conn, deltas)


def decode_spec(field_name: str | None, keys: str) -> RollupSpec:
    """A spec from its ``rollup_specs`` row."""
    return RollupSpec(field_name=field_name, keys=tuple(msgspec.json.decode(keys, type=list[str])))


async def load_specs(conn: aiosqlite.Connection) -> dict[str, RollupSpec]:
    """Every code's recorded rollup spec."""
    rows = await conn.execute_fetchall("SELECT code, field_name, keys FROM rollup_specs")
    return {row[0]: decode_spec(row[1], row[2]) for row in rows}


def changed_specs(
    current: Mapping[str, RollupSpec], wanted: Mapping[str, RollupSpec]
) -> dict[str, RollupSpec | None]:
    """Codes whose rollups must be rebuilt: spec -> new spec (None = drop)."""
    changes: dict[str, RollupSpec | None] = {}
    for code in current.keys() | wanted.keys():
        if current.get(code) != wanted.get(code):
            changes[code] = wanted.get(code)
    return changes


def stored_params(batches: Iterable[EventBatch], codec: JsonCodec) -> list[list[EventRow]]:
    """Encode every batch's rows up front, so the write lock is held for SQL only."""
    return [[event_row(event, codec) for event in batch.events] for batch in batches]
