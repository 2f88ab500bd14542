"""The rollup tail of the SQLite adapter: events stored but not yet folded into rollups.

A metered request's events are a two-event transaction. Keeping their hour, day and month
rollups in the same transaction costs six upserts, about as much as inserting the events
(bench/RESULTS.md), and at concurrency 1 no other request shares them. So a small write only
inserts its events, and a fold adds the whole tail to the rollups later, in one transaction,
for many requests at once (usually to the same few rollup rows).

Exactness does not depend on when the fold runs: ``rollup_state.folded_seq`` says which events
the rollups hold (``seq <= folded_seq``), and every rollup reader reads the events after it (the
tail) raw, in the same statement, hence the same snapshot. The tail is read from the file, not
from memory, so a crash loses nothing (the next fold picks it up) and a second process writing
the same file keeps the rollups right too. A large write (the Lago batch API) folds the tail
along with its own events, and a rebuild folds the tail first. This relies on what the
events table is: append-only, so ``seq`` (its rowid) only grows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from metering.store.codec import JsonCodec
from metering.store.folding import GroupFolder
from metering.store.rollups import RollupKey, RollupSpec, add_to_rollups

__all__ = ["fold_tail", "mark_folded", "outside"]

# Readers select the tail as ``FROM events NOT INDEXED WHERE seq > (SELECT folded_seq FROM
# rollup_state) AND ...``: NOT INDEXED keeps SQLite on the rowid range (the few hundred rows
# at the end of the table) rather than the stream index over the whole period.

_READ_TAIL = (
    "SELECT code, external_subscription_id, ts, properties FROM events NOT INDEXED "
    "WHERE seq > (SELECT folded_seq FROM rollup_state)"
)


def fold_tail(
    db: sqlite3.Connection,
    specs: Mapping[str, RollupSpec],
    codec: JsonCodec,
    deltas: GroupFolder[RollupKey],
) -> int:
    """Fold the tail's events into ``deltas`` (in the open write transaction); how many.

    The caller adds ``deltas`` to the rollups and then calls :func:`mark_folded`, in the same
    transaction. Codes without a spec have no rollups and are skipped.
    """
    count = 0
    for code, subscription, ts, text in db.execute(_READ_TAIL):
        count += 1
        spec = specs.get(code)
        if spec is not None:
            add_to_rollups(deltas, code, subscription, ts, codec.decode_properties(text), spec)
    return count


def mark_folded(db: sqlite3.Connection) -> None:
    """Record that the rollups now hold every stored event (in the open write transaction)."""
    db.execute("UPDATE rollup_state SET folded_seq = (SELECT coalesce(max(seq), 0) FROM events)")


def outside(ts: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``ts`` lies in none of the inclusive ``ranges`` (a reader's raw edge ranges,
    which already count every event, folded or not)."""
    return all(not low <= ts <= high for low, high in ranges)
