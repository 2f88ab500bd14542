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

Run from the repo root: ``python -m bench.ingest [--rounds 5] [--events 50000] [--spread minute]``.
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
from metering.ports import EventBatch
from metering.store.sqlite import SQLiteStore
from metering.writer import EventWriter

BATCH = 100
KEYS = ("key_bench_a", "key_bench_b", "key_bench_c", "key_bench_d")
ROLLUP_EXTRA_KEYS = ("key_id",)  # as proxy.app


async def _store(directory: Path, name: str, spread: str) -> tuple[SQLiteStore, EventFactory]:
    config = settings()
    now = datetime.now(UTC)
    start = month_start(now)
    store = SQLiteStore(directory / f"{name}.db", rollup_extra_keys=ROLLUP_EXTRA_KEYS)
    await store.open()
    sub = await prepare_subscription(store, config, start=start)
    first = start if spread == "month" else max(start, now - timedelta(minutes=1))
    return store, EventFactory(config, sub, first, now, KEYS, seed=len(name))


async def _direct(batches: list[EventBatch], store: SQLiteStore) -> float:
    began = time.perf_counter()
    for batch in batches:
        (result,) = await store.write_batches([batch])
        assert result.stored, "duplicate in a benchmark batch"
    return time.perf_counter() - began


async def _writer(batches: list[EventBatch], store: SQLiteStore, submitters: int) -> float:
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


async def run(rounds: int, events: int, submitters: int, spread: str) -> dict[str, list[float]]:
    """Events/s per round for each path."""
    rates: dict[str, list[float]] = {"direct": [], "writer": []}
    count = max(1, events // BATCH)
    with tempfile.TemporaryDirectory(prefix="tallygate-bench-") as tmp:
        directory = Path(tmp)
        for number in range(rounds):
            for path in ("direct", "writer"):
                store, factory = await _store(directory, f"{path}-{number}", spread)
                try:
                    batches = factory.batches(count, BATCH)
                    if path == "direct":
                        elapsed = await _direct(batches, store)
                    else:
                        elapsed = await _writer(batches, store, submitters)
                finally:
                    await store.close()
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
    args = parser.parse_args()
    print(" ".join(f"{k}={v}" for k, v in machine_info().items()))
    rates = asyncio.run(run(args.rounds, args.events, args.submitters, args.spread))
    print(
        f"\n{args.rounds} rounds x {args.events} events, batches of {BATCH}, "
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
