"""No usage lost across a killed or stopped process: real ``tallygate serve`` processes, real
signals, the SQLite file read back after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.clients import Seen, chat, metered_matches
from tests.reliability.support import (
    ServedGateway,
    served_gateway,
    until,
    usage_by_request,
)

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def running(gateway: ServedGateway) -> Iterator[ServedGateway]:
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def test_sigkill_right_after_responses_loses_no_completed_usage(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    key = gateway.create_key()
    completed: list[Seen] = []
    stop = asyncio.Event()

    async def client_loop(n: int, client: httpx.AsyncClient) -> None:
        # Plain and streamed requests, some streams without include_usage, until the kill.
        i = 0
        while not stop.is_set():
            i += 1
            stream = (n + i) % 2 == 0
            try:
                seen = await chat(
                    client, key, stream=stream, include_usage=i % 3 != 0, words=1 + (n + i) % 7
                )
            except httpx.TransportError:
                return  # the process died under this request: it never completed
            if seen.complete and seen.status == 200:
                completed.append(seen)

    with running(gateway):
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=30) as client:
            loops = [asyncio.create_task(client_loop(n, client)) for n in range(24)]
            await until(lambda: len(completed) >= 300 or all(loop.done() for loop in loops))
            # SIGKILL while the 24 clients keep going: some responses are mid-flight, and the
            # ones that just completed had their events committed moments before.
            gateway.signal(signal.SIGKILL)
            stop.set()
            await asyncio.gather(*loops)
        assert gateway.wait() == -signal.SIGKILL

    with running(gateway):  # restart on the same file: recovery, then read it back
        metered = usage_by_request(gateway.events())
        seen_usage = [s for s in completed if s.usage is not None]
        assert len(completed) >= 300
        assert len(seen_usage) >= 150
        for seen in completed:
            assert seen.request_id in metered, f"{seen.request_id} completed but not metered"
            assert metered[seen.request_id]  # each type once (usage_by_request checks)
        for seen in seen_usage:
            assert metered_matches(seen, metered[seen.request_id])
        # Streams that did not ask for usage were metered from the upstream's usage too.
        sources = {e["usage_source"] for e in gateway.events()}
        assert sources == {"upstream"}
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            usage = (
                await client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
            ).json()
        api_total = sum(row["tokens"] for row in usage["key_usage"]["breakdown"])
        assert api_total == sum(sum(types.values()) for types in metered.values())


async def _slow_streams(gateway: ServedGateway, key: str, count: int) -> list[Seen]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        return list(await asyncio.gather(*(chat(client, key, stream=True) for _ in range(count))))


async def _wait_streams_started(simulator: SimulatorServer, count: int) -> None:
    await until(lambda: simulator.control.stats()["total_requests"] >= count)
    await asyncio.sleep(0.3)  # the first chunks are on their way to the clients


async def test_sigterm_lets_inflight_streams_finish_and_drains_then_exits_0(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url, server={"shutdown_grace_seconds": 30})
    key = gateway.create_key()
    with running(gateway):
        # Each stream: 12 chunks 150 ms apart, about 2 s, still running when SIGTERM comes.
        simulator.control.set_faults(chunks=12, chunk_delay_ms=150)
        streams = asyncio.create_task(_slow_streams(gateway, key, 6))
        await _wait_streams_started(simulator, 6)
        gateway.signal(signal.SIGTERM)
        seen = await streams
        assert gateway.wait() == 0
    assert all(s.status == 200 and s.complete and s.usage for s in seen)
    assert all(s.usage is not None and s.usage["completion_tokens"] == 12 for s in seen)
    metered = usage_by_request(gateway.events())
    assert sorted(metered) == sorted(str(s.request_id) for s in seen)
    assert all(metered_matches(s, metered[str(s.request_id)]) for s in seen)
    assert "Traceback" not in gateway.log()


async def test_sigterm_past_the_grace_period_cuts_streams_but_meters_them(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url, server={"shutdown_grace_seconds": 1})
    key = gateway.create_key()
    with running(gateway):
        simulator.control.set_faults(never_end=True, chunk_delay_ms=50)
        streams = asyncio.create_task(_slow_streams(gateway, key, 4))
        await _wait_streams_started(simulator, 4)
        gateway.signal(signal.SIGTERM)
        seen = await streams
        assert gateway.wait() == 0
    assert all(s.status == 200 and not s.complete and s.text for s in seen)
    metered = usage_by_request(gateway.events())
    assert sorted(metered) == sorted(str(s.request_id) for s in seen)
    events = gateway.events()
    # The upstream never reported usage: what was generated is counted, and flagged.
    assert {e["usage_source"] for e in events} == {"estimated"}
    for s in seen:
        assert metered[str(s.request_id)]["output"] > 0
        assert metered[str(s.request_id)]["input"] > 0
