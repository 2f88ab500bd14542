"""A PostgreSQL store that hangs rather than fails (a dead network path: the connections stay
open, nothing answers) takes the store-unavailable path like one that fails: bounded waits,
then new requests are refused with 503 before the upstream is called, ``/readyz`` and
``/v1/usage`` answer 503 instead of hanging, usage already produced is held, and when the path
comes back the gateway recovers by itself and writes that usage exactly once.

``tallygate serve`` reaches the shared server through a loopback relay that the test
blackholes and restores (the server itself is never touched).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.clients import chat, metered_matches
from tests.reliability.support import served_gateway, until
from tests.reliability.test_shutdown_failing_store import (
    PG_HOST,
    PG_PATH,
    PG_PORT,
    PG_USER,
    _pg_usage,
    pg_schema,  # noqa: F401 - the fixture, shared
)
from tests.reliability.test_store_stall import assert_store_unavailable, not_ready, ready
from tests.support.postgres import schema_url
from tests.support.relay import relay_to

pytestmark = pytest.mark.slow

#: Short timeouts so the test waits seconds; the defaults are 30, 10 and 5.
TIMEOUTS = {
    "statement_timeout_seconds": 1.0,
    "connect_timeout_seconds": 1.0,
    "ping_timeout_seconds": 0.5,
}
#: Longer than any bounded wait of the gateway's (a read is a few statements, each cut at 1 s):
#: a client still waiting after this found a hang. The old gateway never answered.
BOUND = 20


async def failing_writes(client: httpx.AsyncClient) -> bool:
    probe = await client.get("/readyz")
    return probe.status_code == 503 and probe.json()["status"] == "store failing writes"


async def test_hung_postgresql_refuses_new_work_answers_503_and_recovers_without_loss(
    tmp_path: Path,
    simulator: SimulatorServer,
    pg_schema: str,  # noqa: F811 - the fixture
) -> None:
    direct = schema_url(pg_schema)
    with relay_to(PG_HOST, PG_PORT) as relay:
        relayed = schema_url(pg_schema, f"postgresql://{PG_USER}127.0.0.1:{relay.port}{PG_PATH}")
        gateway = served_gateway(tmp_path, simulator.base_url, store={"url": relayed, **TIMEOUTS})
        key = gateway.create_key()
        auth = {"Authorization": f"Bearer {key}"}
        gateway.start()
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=BOUND) as client:
                before = await chat(client, key, stream=False)
                assert before.status == 200
                # (1) Two chats forwarded, their answers on the way (the upstream is slow)...
                forwarded = simulator.control.stats()["total_requests"]
                simulator.control.set_faults(delay_ms=1500, chunks=4, chunk_delay_ms=100)
                held = [asyncio.create_task(chat(client, key, stream=s)) for s in (False, True)]
                await until(lambda: simulator.control.stats()["total_requests"] >= forwarded + 2)
                # ...when the path to PostgreSQL dies: their usage writes hang, then time out.
                relay.blackhole()
                # (3) Not ready within the bound (the old gateway's probe never answered)...
                await until(lambda: not_ready(client), within=BOUND)
                # ...and, once the held usage's first write has timed out, failing writes.
                await until(lambda: failing_writes(client), within=BOUND)
                # (2) New chats are refused before the upstream is asked.
                simulator.control.reset_faults()
                forwarded = simulator.control.stats()["total_requests"]
                for stream in (False, True):
                    assert_store_unavailable(await chat(client, key, stream=stream))
                assert simulator.control.stats()["total_requests"] == forwarded
                # (4) A usage read answers 503 in the OpenAI envelope instead of hanging.
                usage = await client.get("/v1/usage", headers=auth)
                assert usage.status_code == 503, usage.text
                assert usage.json()["error"]["code"] == "store_unavailable"
                assert not any(task.done() for task in held)  # each waits for its usage
                # (5) The path comes back: the held usage is written, the gateway serves again.
                relay.restore()
                completed = await asyncio.wait_for(asyncio.gather(*held), BOUND)
                assert all(s.status == 200 and s.complete and s.usage for s in completed)
                await until(lambda: ready(client), within=BOUND)
                after = await chat(client, key, stream=True)
                assert after.status == 200
                usage = await client.get("/v1/usage", headers=auth)
                assert usage.status_code == 200, usage.text
        finally:
            gateway.stop()
    served = [before, *completed, after]
    # Exactly once: one input and one output event per served request, none for the refused.
    metered = await _pg_usage(direct)
    assert sorted(metered) == sorted(str(s.request_id) for s in served)
    assert all(metered_matches(s, metered[str(s.request_id)]) for s in served)
    tokens = sum(row["tokens"] for row in usage.json()["key_usage"]["breakdown"])
    assert tokens == sum(s.usage["total_tokens"] for s in served)  # type: ignore[index]
    assert "Traceback" not in gateway.log()
