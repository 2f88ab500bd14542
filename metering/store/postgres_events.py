"""Event writes of the PostgreSQL adapter: one group commit, deadlock-free across replicas.

A group commit runs in one transaction, and takes its row locks in one global order so that
replicas writing at the same time can wait for each other but never deadlock:

1. the rollup-spec advisory lock, shared (a rebuild takes it exclusively, so the specs read
   next are the ones every rollup row was built with);
2. one ``INSERT ... SELECT ... ORDER BY (transaction_id, external_subscription_id)
   ON CONFLICT DO NOTHING RETURNING``: the first copy of every identity in the group, in key
   order. The unique constraint alone decides what was already stored (never a read first);
   a concurrent insert of the same identity makes this wait for that transaction's outcome;
3. the batches' semantics (REJECT all-or-nothing, SKIP, first copy wins) worked out from what
   the constraint refused; rows of this transaction that a rejected batch put in are deleted
   or replaced by the copy that should win (only this transaction's own rows are touched);
4. one ``INSERT ... ORDER BY key ON CONFLICT DO UPDATE`` of the hour, day and month rollup
   deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

from metering.models import Event
from metering.ports import BatchResult, DuplicatePolicy, EventBatch
from metering.store.codec import JsonCodec, event_row
from metering.store.folding import GroupFolder
from metering.store.postgres_schema import SPEC_LOCK, Conn, lock_sql
from metering.store.rollups import (
    RollupKey,
    RollupSpec,
    add_to_rollups,
    coarser,
    decode_spec,
    rollup_deltas,
)

__all__ = ["load_specs", "rebuild_rollups", "write_group"]

Identity = tuple[str, str]

_INSERT_EVENTS = """
INSERT INTO events (seq, transaction_id, external_subscription_id, code, ts, created_us, id,
                    properties, precise_total_amount_cents)
SELECT * FROM (
  -- sequence numbers follow the group's order; the insert itself follows the key order
  SELECT nextval(pg_get_serial_sequence('events', 'seq')), t, s, c, ts, cr, i, p, a
  FROM json_to_recordset($1::json)
       AS u(t text, s text, c text, ts int8, cr int8, i text, p text, a text, n int8)
  ORDER BY n OFFSET 0) AS numbered(seq, t, s, c, ts, cr, i, p, a)
ORDER BY t, s
ON CONFLICT ON CONSTRAINT events_identity DO NOTHING
RETURNING transaction_id, external_subscription_id
"""

_DELETE_EVENT = "DELETE FROM events WHERE transaction_id = $1 AND external_subscription_id = $2"

_REPLACE_EVENT = """
UPDATE events SET code = $3, ts = $4, created_us = $5, id = $6, properties = $7,
  precise_total_amount_cents = $8, seq = nextval(pg_get_serial_sequence('events', 'seq'))
WHERE transaction_id = $1 AND external_subscription_id = $2
"""

_UPSERT_ROLLUPS = """
INSERT INTO rollups AS r (code, external_subscription_id, grain, bucket, dims, events,
                          numeric_events, total, maximum)
SELECT * FROM json_to_recordset($1::json)
  AS u(c text, s text, g int8, b int8, d text, e int8, ne int8, t numeric, m numeric)
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (code, external_subscription_id, grain, bucket, dims) DO UPDATE SET
  events = r.events + excluded.events,
  numeric_events = r.numeric_events + excluded.numeric_events,
  total = CASE WHEN abs(r.total) < 1e40 THEN r.total + excluded.total ELSE 'NaN' END,
  maximum = GREATEST(r.maximum, excluded.maximum)
"""
# 1e40 is metering.values.SUM_LIMIT: a total no sum of domain values reaches (an older
# version's, or NaN) is never added to (that could overflow NUMERIC and fail the commit) but
# kept NaN, which readers answer from raw events (folding.rollup_number).

_EVENT_FIELDS = ("t", "s", "c", "ts", "cr", "i", "p", "a")
_ROLLUP_FIELDS = ("c", "s", "g", "b", "d", "e", "ne", "t", "m")


def _recordset(rows: Sequence[Sequence[object]], fields: Sequence[str], codec: JsonCodec) -> str:
    """Rows as the JSON array of objects ``json_to_recordset`` reads (one parameter, parsed by
    the server: far cheaper than asyncpg encoding one array per column, element by element).
    Decimals go as JSON numbers, which PostgreSQL reads into NUMERIC exactly."""
    return codec.encode_text([dict(zip(fields, row, strict=True)) for row in rows])


def _identity(event: Event) -> Identity:
    return (event.transaction_id, event.external_subscription_id)


def _outcome(
    batches: Sequence[EventBatch], present: set[Identity]
) -> tuple[list[BatchResult], dict[Identity, Event]]:
    """Each batch's result and the copy stored per identity, given what was stored before."""
    results: list[BatchResult] = []
    stored: dict[Identity, Event] = {}
    for batch in batches:
        duplicates: list[int] = []
        accepted: dict[Identity, Event] = {}
        for index, event in enumerate(batch.events):
            key = _identity(event)
            if key in present or key in stored or key in accepted:
                duplicates.append(index)
            else:
                accepted[key] = event
        if batch.policy is DuplicatePolicy.REJECT and duplicates:
            results.append(BatchResult(stored=False, inserted=0, duplicates=tuple(duplicates)))
            continue
        stored.update(accepted)
        results.append(
            BatchResult(stored=True, inserted=len(accepted), duplicates=tuple(duplicates))
        )
    return results, stored


async def load_specs(conn: Conn) -> dict[str, RollupSpec]:
    """Every code's recorded rollup spec."""
    rows = await conn.fetch("SELECT code, field_name, keys FROM rollup_specs")
    return {row[0]: decode_spec(row[1], row[2]) for row in rows}


async def write_group(
    conn: Conn, batches: Sequence[EventBatch], codec: JsonCodec
) -> tuple[list[BatchResult], dict[str, RollupSpec]]:
    """Store the batches inside the open transaction (see the module docstring).

    Returns the batches' results and the specs the rollups were written with.
    """
    await conn.execute(lock_sql(SPEC_LOCK, shared=True))
    specs = await load_specs(conn)
    first: dict[Identity, Event] = {}
    for batch in batches:
        for event in batch.events:
            first.setdefault(_identity(event), event)
    inserted: set[Identity] = set()
    if first:
        rows = [(*event_row(event, codec), n) for n, event in enumerate(first.values())]
        returned = await conn.fetch(_INSERT_EVENTS, _recordset(rows, (*_EVENT_FIELDS, "n"), codec))
        inserted = {(row[0], row[1]) for row in returned}
    results, stored = _outcome(batches, set(first) - inserted)
    for key in sorted(inserted):
        winner = stored.get(key)
        if winner is None:  # only a rejected batch had it
            await conn.execute(_DELETE_EVENT, *key)
        elif winner is not first[key]:  # a rejected batch's copy went in first
            await conn.execute(_REPLACE_EVENT, *event_row(winner, codec))
    await upsert_rollups(conn, rollup_deltas(stored.values(), specs), codec)
    return results, specs


async def upsert_rollups(conn: Conn, hours: GroupFolder[RollupKey], codec: JsonCodec) -> None:
    """Add hour increments, and the day and month increments they make, to the rollup rows
    (in key order)."""
    if not len(hours):
        return
    rows = [
        (*key, fold.events, fold.numeric_events, fold.total, fold.maximum)
        for deltas in (hours, *coarser(hours))
        for key, fold in deltas.items()
    ]
    await conn.execute(_UPSERT_ROLLUPS, _recordset(rows, _ROLLUP_FIELDS, codec))


async def rebuild_rollups(conn: Conn, code: str, spec: RollupSpec | None, codec: JsonCodec) -> None:
    """Recompute ``code``'s rollups from its raw events under ``spec`` and record the spec.

    The caller holds the spec lock exclusively. ``spec`` None drops the code's rollups.
    """
    await conn.execute("DELETE FROM rollups WHERE code = $1", code)
    if spec is None:
        await conn.execute("DELETE FROM rollup_specs WHERE code = $1", code)
        return
    await conn.execute(
        "INSERT INTO rollup_specs (code, field_name, keys) VALUES ($1, $2, $3) "
        "ON CONFLICT (code) DO UPDATE SET field_name = excluded.field_name, keys = excluded.keys",
        code,
        spec.field_name,
        codec.encode_text(spec.keys),
    )
    deltas: GroupFolder[RollupKey] = GroupFolder()
    async for subscription, ts, text in conn.cursor(
        "SELECT external_subscription_id, ts, properties FROM events WHERE code = $1",
        code,
        prefetch=2000,
    ):
        add_to_rollups(deltas, code, subscription, ts, codec.decode_properties(text), spec)
    await upsert_rollups(conn, deltas, codec)
