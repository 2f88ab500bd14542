"""SIGTERM while the store fails: ``tallygate serve`` exits within its grace, every client gets
its answer, and the usage it could not store is reported (one line per request, with the
events as a Lago batch body), never silently dropped: replayed through the Lago API after a
restart, it bills exactly what the clients saw.

The store fails for real: SQLite's write lock held by another connection; PostgreSQL reached
through a loopback relay that the test cuts (the shared server itself is never touched).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.clients import Seen, chat, metered_matches
from tests.reliability.support import (
    ADMIN_KEY,
    ServedGateway,
    served_gateway,
    until,
    usage_by_request,
)
from tests.support.postgres import PG_URL, create_schema, drop_schema, schema_url
from tests.support.relay import relay_to
from tests.support.sqlite import write_lock

pytestmark = pytest.mark.slow

GRACE = 3
#: Start-up of the interpreter aside, what exiting may take past the grace: the store's close
#: and the lifespan's last steps. Generous for a loaded machine; the old gateway never exited.
MARGIN = 20
PER_KIND = 3
_PG = urlsplit(PG_URL)
PG_HOST, PG_PORT, PG_PATH = _PG.hostname or "127.0.0.1", _PG.port or 5432, _PG.path
PG_USER = _PG.netloc.rpartition("@")[0] + "@" if "@" in _PG.netloc else ""
_UNWRITTEN = re.compile(r"usage not stored \((.*)\): request (req_\w+), .*; events: (\{.*\})$")


def unwritten(log: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """request id -> (why, Lago batch body) of each 'usage not stored' line of the log."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for line in log.splitlines():
        match = _UNWRITTEN.search(line)
        if match:
            why, request_id, body = match.groups()
            assert request_id not in found, f"{request_id} reported twice"
            found[request_id] = (why, json.loads(body))
    return found


class InFlight:
    """Plain and streamed chats that the upstream answers slowly, all forwarded already."""

    def __init__(self, gateway: ServedGateway, key: str) -> None:
        self.client = httpx.AsyncClient(base_url=gateway.url, timeout=120)
        self.tasks = [
            asyncio.create_task(chat(self.client, key, stream=stream))
            for stream in (False, True)
            for _ in range(PER_KIND)
        ]

    @classmethod
    async def start(cls, gateway: ServedGateway, simulator: SimulatorServer, key: str) -> InFlight:
        """Send them and wait until the upstream has every one."""
        before = simulator.control.stats()["total_requests"]
        simulator.control.set_faults(delay_ms=1500, chunks=4, chunk_delay_ms=100)
        chats = cls(gateway, key)
        await until(lambda: simulator.control.stats()["total_requests"] >= before + 2 * PER_KIND)
        return chats

    def waiting(self) -> bool:
        """Whether every chat still waits (for its usage to be written)."""
        return not any(task.done() for task in self.tasks)

    async def sigterm(self, gateway: ServedGateway) -> list[Seen]:
        """SIGTERM the gateway; what each client saw once it exited (within the bound)."""
        gateway.signal(signal.SIGTERM)
        try:
            status = await asyncio.to_thread(gateway.wait, GRACE + MARGIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {GRACE + MARGIN} s after SIGTERM:\n{gateway.log()}")
        seen = list(await asyncio.gather(*self.tasks))
        await self.client.aclose()
        assert status == 0
        return seen


def _assert_answered_and_reported(
    seen: list[Seen], log: str
) -> dict[str, tuple[str, dict[str, Any]]]:
    # Every client got its whole answer (the streams their [DONE]) with its usage...
    assert all(s.status == 200 and s.complete and s.usage for s in seen), seen
    # ...and each request's unwritten usage is one line naming it, with its events.
    reported = unwritten(log)
    assert sorted(reported) == sorted(str(s.request_id) for s in seen)
    for s in seen:
        why, body = reported[str(s.request_id)]
        assert why.startswith("given up at the shutdown deadline")
        kinds = {e["transaction_id"]: e["properties"]["tokens"] for e in body["events"]}
        assert kinds == {
            f"{s.request_id}:input": s.usage["prompt_tokens"],  # type: ignore[index]
            f"{s.request_id}:output": s.usage["completion_tokens"],  # type: ignore[index]
        }
    assert f"{4 * PER_KIND} usage event(s) of {2 * PER_KIND} request(s) were not stored" in log
    assert "Traceback" not in log
    return reported


async def _replay(gateway: ServedGateway, reported: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """What an operator does with the report: the logged bodies to the Lago batch API."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as admin:
        for _, body in reported.values():
            replayed = await admin.post("/api/v1/events/batch", json=body)
            assert replayed.status_code == 200, replayed.text


async def _not_ready(gateway: ServedGateway) -> bool:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as probe:
        return (await probe.get("/readyz")).status_code == 503


async def test_sigterm_with_sqlite_locked_exits_in_grace_and_reports_the_usage(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(
        tmp_path,
        simulator.base_url,
        server={"shutdown_grace_seconds": GRACE},
        store={"busy_timeout_seconds": 0.3},
    )
    key = gateway.create_key()
    gateway.start()
    try:
        chats = await InFlight.start(gateway, simulator, key)
        with write_lock(gateway.db):
            # The upstream answers, the usage writes fail and are retried: the store stalls.
            await until(lambda: _not_ready(gateway))
            assert chats.waiting()  # each for its usage
            seen = await chats.sigterm(gateway)
    finally:
        gateway.stop()
    reported = _assert_answered_and_reported(seen, gateway.log())
    assert gateway.events() == []  # nothing of it was written: the report is all there is
    simulator.control.reset_faults()
    gateway.start()  # the store is free again: the operator replays the report
    try:
        await _replay(gateway, reported)
    finally:
        gateway.stop()
    metered = usage_by_request(gateway.events())
    assert sorted(metered) == sorted(str(s.request_id) for s in seen)
    assert all(metered_matches(s, metered[str(s.request_id)]) for s in seen)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = asyncio.run(create_schema("tg_shutdown"))
    try:
        yield schema
    finally:
        asyncio.run(drop_schema(schema))


async def _pg_usage(url: str) -> dict[str, dict[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT transaction_id, properties FROM events")
    finally:
        await conn.close()
    return usage_by_request([{"transaction_id": row[0], **json.loads(row[1])} for row in rows])


async def test_sigterm_with_postgresql_unreachable_exits_in_grace_and_reports_the_usage(
    tmp_path: Path, simulator: SimulatorServer, pg_schema: str
) -> None:
    direct = schema_url(pg_schema)
    with relay_to(PG_HOST, PG_PORT) as relay:
        relayed = schema_url(pg_schema, f"postgresql://{PG_USER}127.0.0.1:{relay.port}{PG_PATH}")
        gateway = served_gateway(
            tmp_path,
            simulator.base_url,
            server={"shutdown_grace_seconds": GRACE},
            store={"url": relayed},
        )
        key = gateway.create_key()
        gateway.start()
        try:
            chats = await InFlight.start(gateway, simulator, key)
            # A dead network path: the connections stay open, nothing ever answers, and the
            # usage writes hang rather than fail.
            relay.blackhole()
            await asyncio.sleep(2.5)  # the upstream has answered; the writes hang
            assert chats.waiting()
            seen = await chats.sigterm(gateway)
        finally:
            gateway.stop()
    reported = _assert_answered_and_reported(seen, gateway.log())
    assert await _pg_usage(direct) == {}
    # The operator replays the report through a gateway that reaches the server.
    (tmp_path / "after").mkdir()
    replaying = served_gateway(tmp_path / "after", simulator.base_url, store={"url": direct})
    replaying.start()
    try:
        await _replay(replaying, reported)
    finally:
        replaying.stop()
    metered = await _pg_usage(direct)
    assert sorted(metered) == sorted(str(s.request_id) for s in seen)
    assert all(metered_matches(s, metered[str(s.request_id)]) for s in seen)
