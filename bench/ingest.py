"""Event ingestion into SQLite, events/s (design.md section 6: >= 20,000 events/s).

Two paths, each on a fresh file in a temp dir per round, with the gateway's rollup keys:

* ``direct``: ``SQLiteStore.write_batches([batch])`` sequentially, one 100-event batch (the Lago
  batch API's unit) per call, so one transaction per batch.
* ``writer``: ``EventWriter`` (group commit) with many concurrent submitters, each submitting
  100-event batches in a loop; the writer folds whatever is queued into one transaction.

Events are built before the clock starts (the store's cost is measured, not event building)
with timestamps spread over the current month, so most events touch distinct hour rollups:
pessimistic next to live traffic, whose timestamps are all "now".

``--spread minute`` puts the timestamps in the last minute instead, as live gateway traffic.

``--store postgres`` measures the PostgreSQL store instead (a fresh schema per round on
``--pg-url``, dropped after it).

Run from the repo root: ``python -m bench.ingest [--rounds 5] [--events 50000] [--spread minute]
[--store sqlite|postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as ``python bench/ingest.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    EventFactory,
    Summary,
    machine_info,
    month_start,
    prepare_subscription,
    settings,
)
from bench.pg import DEFAULT_URL, drop_schema, ensure_schema, pg_store
from metering.ports import EventBatch, Store
from metering.store.sqlite import SQLiteStore
from metering.writer import EventWriter

BATCH = 100
KEYS = ("key_bench_a", "key_bench_b", "key_bench_c", "key_bench_d")
ROLLUP_EXTRA_KEYS = ("key_id",)  # as proxy.app


class Target:
    """Where a round writes: a fresh SQLite file, or a fresh PostgreSQL schema."""

    def __init__(self, kind: str, directory: Path, pg_url: str) -> None:
        self.kind = kind
        self.directory = directory
        self.pg_url = pg_url

    async def store(self, name: str) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(self.directory / f"{name}.db", rollup_extra_keys=ROLLUP_EXTRA_KEYS)
        return pg_store(await ensure_schema(self.pg_url, _schema(name), fresh=True))

    async def discard(self, name: str) -> None:
        if self.kind == "postgres":
            await drop_schema(self.pg_url, _schema(name))


def _schema(name: str) -> str:
    return "bench_ingest_" + name.replace("-", "_")


async def _store(target: Target, name: str, spread: str) -> tuple[Store, EventFactory]:
    config = settings()
    now = datetime.now(UTC)
    start = month_start(now)
    store = await target.store(name)
    await store.open()
    sub = await prepare_subscription(store, config, start=start)
    first = start if spread == "month" else max(start, now - timedelta(minutes=1))
    return store, EventFactory(config, sub, first, now, KEYS, seed=len(name))


async def _direct(batches: list[EventBatch], store: Store) -> float:
    began = time.perf_counter()
    for batch in batches:
        (result,) = await store.write_batches([batch])
        assert result.stored, "duplicate in a benchmark batch"
    return time.perf_counter() - began


async def _writer(batches: list[EventBatch], store: Store, submitters: int) -> float:
    # Queue bound large enough for every submitter's batch in flight.
    writer = EventWriter(store, max_pending=max(10_000, submitters * BATCH * 2))
    await writer.start()
    queue = iter(batches)

    async def submitter() -> None:
        for batch in queue:  # shared iterator: each batch goes to exactly one submitter
            result = await writer.submit(batch)
            assert result.stored, "duplicate in a benchmark batch"

    began = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(submitters)))
    elapsed = time.perf_counter() - began
    await writer.stop()
    return elapsed


async def run(
    rounds: int, events: int, submitters: int, spread: str, kind: str, pg_url: str
) -> dict[str, list[float]]:
    """Events/s per round for each path."""
    rates: dict[str, list[float]] = {"direct": [], "writer": []}
    count = max(1, events // BATCH)
    with tempfile.TemporaryDirectory(prefix="tallygate-bench-") as tmp:
        target = Target(kind, Path(tmp), pg_url)
        for number in range(rounds):
            for path in ("direct", "writer"):
                name = f"{path}-{number}"
                store, factory = await _store(target, name, spread)
                try:
                    batches = factory.batches(count, BATCH)
                    if path == "direct":
                        elapsed = await _direct(batches, store)
                    else:
                        elapsed = await _writer(batches, store, submitters)
                finally:
                    await store.close()
                    await target.discard(name)
                rate = count * BATCH / elapsed
                rates[path].append(rate)
                print(
                    f"round {number + 1} {path:6}: {count * BATCH} events in "
                    f"{elapsed:.2f} s = {rate:,.0f} events/s",
                    flush=True,
                )
    return rates


def main() -> None:
    """Parse arguments, run the rounds, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=50_000, help="events per round and path")
    parser.add_argument("--submitters", type=int, default=64, help="concurrent writer submitters")
    parser.add_argument(
        "--spread",
        choices=("month", "minute"),
        default="month",
        help="timestamps over the month so far (default) or the last minute (live traffic)",
    )
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_URL, help="server for --store postgres")
    args = parser.parse_args()
    print(" ".join(f"{k}={v}" for k, v in machine_info().items()))
    rates = asyncio.run(
        run(args.rounds, args.events, args.submitters, args.spread, args.store, args.pg_url)
    )
    print(
        f"\n{args.store}: {args.rounds} rounds x {args.events} events, batches of {BATCH}, "
        f"timestamps over {'the month so far' if args.spread == 'month' else 'the last minute'}:"
    )
    for path, values in rates.items():
        s = Summary.of(values)
        label = f"writer ({args.submitters} submitters)" if path == "writer" else "direct"
        print(
            f"  {label:26} median {s.median:>9,.0f} events/s  (min {s.low:,.0f}, max {s.high:,.0f})"
        )


if __name__ == "__main__":
    main()
