"""Debounced: one run per burst of pokes, a failed run tried again, nothing after stop."""

from __future__ import annotations

import asyncio

from metering.store.debounce import Debounced


async def test_a_burst_of_pokes_makes_one_run_and_a_failure_runs_again() -> None:
    outcomes = [False, True]  # the first run fails, the retry succeeds
    runs: list[bool] = []

    async def job() -> bool:
        runs.append(outcomes[len(runs)] if len(runs) < len(outcomes) else True)
        return runs[-1]

    debounced = Debounced(job, interval=0.01, name="test-debounced")
    debounced.start()
    for _ in range(50):
        debounced.poke()
    await asyncio.sleep(0.1)
    assert runs == [False, True]  # one run for the burst, then the retry, then nothing
    debounced.poke()
    await asyncio.sleep(0.05)
    assert runs == [False, True, True]
    await debounced.stop()
    debounced.poke()
    await asyncio.sleep(0.05)
    assert runs == [False, True, True]  # stopped: pokes do nothing
