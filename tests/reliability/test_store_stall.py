"""A stalled store, for real: another process-level connection holds SQLite's write lock
(``BEGIN EXCLUSIVE``). New requests are refused with 503 + Retry-After before anything is
forwarded; usage already produced waits in the bounded queue and is written once the lock goes;
the gateway recovers by itself."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.clients import Seen, chat, metered_matches
from tests.reliability.support import served_gateway, until, usage_by_request
from tests.support.sqlite import write_lock

pytestmark = pytest.mark.slow


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def not_ready(client: httpx.AsyncClient) -> bool:
    return not await ready(client)


def answered_or_forwarded(
    simulator: SimulatorServer, task: asyncio.Task[Seen], forwarded: int
) -> bool:
    return task.done() or simulator.control.stats()["total_requests"] >= forwarded


def assert_store_unavailable(seen: Seen) -> None:
    assert seen.status == 503
    assert seen.headers["retry-after"] == "1"
    assert seen.body["error"]["code"] == "store_unavailable"
    assert seen.body["error"]["type"] == "server_error"
    assert "retry" in seen.body["error"]["message"]


async def test_stalled_store_refuses_new_requests_keeps_produced_usage_and_recovers(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url, store={"busy_timeout_seconds": 0.3})
    key = gateway.create_key()
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            before = await chat(client, key, stream=False)
            assert before.status == 200
            with write_lock(gateway.db):
                # Admitted before the stall is known: its tokens exist, so it waits for the store.
                held = [asyncio.create_task(chat(client, key, stream=s)) for s in (False, True)]
                await until(lambda: not_ready(client))
                forwarded = simulator.control.stats()["total_requests"]
                refused = [await chat(client, key, stream=stream) for stream in (False, True)]
                for seen in refused:
                    assert_store_unavailable(seen)
                # Refused before the upstream was asked: no tokens were produced for them.
                assert simulator.control.stats()["total_requests"] == forwarded
                assert not any(task.done() for task in held)
            # The lock is gone: the held requests complete with their usage written...
            completed = await asyncio.gather(*held)
            assert all(s.status == 200 and s.complete for s in completed)
            # ...and the gateway serves again without a restart.
            await until(lambda: ready(client))
            after = await chat(client, key, stream=True)
            assert after.status == 200
    finally:
        gateway.stop()
    metered = usage_by_request(gateway.events())
    served = [before, *completed, after]
    assert sorted(metered) == sorted(str(s.request_id) for s in served)
    assert all(metered_matches(s, metered[str(s.request_id)]) for s in served)
    assert gateway.wait() == 0


async def test_the_queue_is_bounded_while_writes_wait(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    # A long busy timeout: the writer waits on the lock (no failure yet), so it is the bound on
    # pending events, not the failure signal, that must refuse new work.
    gateway = served_gateway(
        tmp_path,
        simulator.base_url,
        store={"busy_timeout_seconds": 60, "max_pending_events": 5},
    )
    key = gateway.create_key()
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=90) as client:
            with write_lock(gateway.db):
                held: list[asyncio.Task[Seen]] = []
                refused: Seen | None = None
                for _ in range(40):
                    task = asyncio.create_task(chat(client, key, stream=False))
                    check = functools.partial(answered_or_forwarded, simulator, task, len(held) + 1)
                    await until(check)
                    await asyncio.sleep(0.05)  # its events reach the queue
                    if task.done():
                        refused = await task
                        break
                    held.append(task)
                assert refused is not None, "40 requests were admitted against a 5-event queue"
                assert_store_unavailable(refused)
                # Each admitted request holds 2 events (input, output): the queue stopped
                # admitting once 5 were pending, whatever the lock's duration.
                assert 3 <= len(held) <= 5
            completed = await asyncio.gather(*held)
        assert all(s.status == 200 for s in completed)
    finally:
        gateway.stop()
    metered = usage_by_request(gateway.events())
    assert sorted(metered) == sorted(str(s.request_id) for s in completed)
