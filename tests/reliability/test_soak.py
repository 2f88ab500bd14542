"""A bounded soak: ``tallygate serve`` and the simulator as their own processes, mixed plain and
streamed requests at concurrency 64. Every token the upstream reported is metered exactly once,
no request fails, and the gateway's resident memory does not grow once warm.

Sized for the shared 2-core machine it runs on: 2,000 requests take 45-60 s there while other
work runs (about 35 requests/s through three Python processes under a load average of 5). The
memory check compares RSS after the first third with RSS at the end; with SQLite's page caches
filling meanwhile it bounds a leak at a few KiB per request, no finer. The 10k-to-100k memory
target of design.md section 6 is for bench/.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.simulator.client import SimulatorControl
from tests.reliability.clients import Seen, chat
from tests.reliability.support import (
    UPSTREAM_KEY,
    ServedGateway,
    free_port,
    served_gateway,
    usage_by_request,
)

pytestmark = pytest.mark.slow

SOAK_REQUESTS = 2000
CONCURRENCY = 64
#: Resident memory may move by allocator noise, not by a per-request leak: at 0.5 KiB per
#: request the late half alone would add > 1.4 MiB, so 8 MiB over ~4,000 requests bounds a
#: leak at about 2 KiB per request.
RSS_SLACK_KIB = 8 * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def simulator_process() -> Iterator[str]:
    """The simulator in its own process (the test's own loop drives 64 clients)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy.simulator",
            "--port",
            str(port),
            "--api-key",
            UPSTREAM_KEY,
            "--completion-tokens",
            "12",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/_sim/stats", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(30)


async def _drive(gateway: ServedGateway, key: str, total: int, seen: list[Seen]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(total):
        queue.put_nowait(n)
    # Idle connections expire on the client before uvicorn's 5 s keep-alive closes them: with
    # both at 5 s (httpx's default), a request sent on a connection the server is closing at
    # that moment fails with ReadError; that race is the client's, not the gateway's.
    limits = httpx.Limits(
        max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2
    )

    async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                stream = n % 2 == 1
                seen.append(
                    await chat(client, key, stream=stream, include_usage=n % 4 != 1, words=n % 9)
                )

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def test_soak_meters_every_reported_token_once_without_errors_or_growth(
    tmp_path: Path, simulator_process: str
) -> None:
    gateway = served_gateway(tmp_path, f"{simulator_process}/v1")
    key = gateway.create_key()
    gateway.start()
    try:
        assert gateway.process is not None
        pid = gateway.process.pid
        warm: list[Seen] = []
        await _drive(gateway, key, SOAK_REQUESTS // 3, warm)
        early = rss_kib(pid)
        rest: list[Seen] = []
        await _drive(gateway, key, SOAK_REQUESTS - len(warm), rest)
        late = rss_kib(pid)
        cpu = cpu_seconds(pid)
    finally:
        gateway.stop()
    seen = warm + rest
    assert len(seen) == SOAK_REQUESTS
    failed = [s for s in seen if s.status != 200 or not s.complete]
    assert not failed, failed[:3]
    with SimulatorControl(simulator_process) as control:
        wire = control.stats()["usage"]
    assert wire["responses"] == SOAK_REQUESTS
    metered = usage_by_request(gateway.events())  # fails on any duplicate (request, type)
    assert sorted(metered) == sorted(str(s.request_id) for s in seen)
    assert (
        sum(types.get("input", 0) + types.get("cached_input", 0) for types in metered.values())
        == (wire["prompt_tokens"])
    )
    assert sum(types.get("output", 0) for types in metered.values()) == wire["completion_tokens"]
    assert {e["usage_source"] for e in gateway.events()} == {"upstream"}
    assert late - early <= RSS_SLACK_KIB, f"RSS grew from {early} KiB to {late} KiB"
    print(
        f"soak: {SOAK_REQUESTS} requests, gateway CPU {cpu:.1f} s "
        f"({cpu / SOAK_REQUESTS * 1000:.2f} ms/request), RSS {early} KiB warm -> {late} KiB"
    )
