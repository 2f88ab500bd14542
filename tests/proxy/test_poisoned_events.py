"""One poisoned Lago event beside many concurrent chats, on PostgreSQL: the real app (served on
loopback), the real simulator upstream, a real schema.

PostgreSQL refuses a NUL in text and numbers past its ``numeric``; such an event, committed in
the same group as other requests' usage, used to fail the whole group (chats answered 500, their
usage lost). Now every chat answers 200 with its usage stored, and the poisoned event alone is
refused with a 4xx in Lago's envelope: by the store (logged with the API request's id), or by
ingestion before it, whichever refuses it first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from config import Settings, load_settings
from metering.store.postgres import PostgresStore
from proxy.app import ROLLUP_EXTRA_KEYS, create_app
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import SimulatorServer
from proxy.state import system_clock
from tests.support.postgres import fresh_schema

pytestmark = pytest.mark.slow

ADMIN_KEY = "admin-poison"
#: Concurrent chat clients, each sending this many chats one after another (the issue's 450).
CHATS = 150
ROUNDS = 3
#: Values PostgreSQL cannot hold, as a careless client sends them (JSON escapes and numbers).
POISONS = (
    b'{"event": {"transaction_id": "nul-\\u0000-%d", "external_subscription_id": "%s", '
    b'"code": "llm_tokens", "properties": {"tokens": 5}}}',
    b'{"event": {"transaction_id": "huge-%d", "external_subscription_id": "%s", '
    b'"code": "llm_tokens", "properties": {"model": "gpt-4o", "type": "input", '
    b'"tokens": 1e200000}}}',
)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("tg_poison") as url:
        yield url


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


def _settings(pg_url: str, upstream_url: str, tmp_path: Path) -> Settings:
    settings = demo_settings(
        load_settings(env={}), upstream_url=upstream_url, db=tmp_path / "unused.db", port=0
    )
    store = msgspec.structs.replace(settings.store, url=pg_url)
    secrets = {**settings.secrets, settings.admin.api_key_env: ADMIN_KEY}
    return msgspec.structs.replace(settings, store=store, secrets=secrets)


async def _key(settings: Settings) -> tuple[str, str]:
    """A key minted into the store: its secret and its subscription."""
    store = PostgresStore(settings.store.url, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
    await store.open()
    try:
        issued = await issue_key(store, settings, customer="acme", now=system_clock())
        record = await store.get_key(id=issued.record.id)
    finally:
        await store.close()
    return issued.secret, record.external_subscription_id


async def _stored_usage(url: str, subscription: str) -> dict[str, dict[str, int]]:
    """request id -> token type -> tokens, as stored."""
    store = PostgresStore(url, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
    await store.open()
    try:
        events = await store.list_events(
            external_subscription_id=subscription,
            code="llm_tokens",
            from_ts=None,
            to_ts=system_clock(),
        )
    finally:
        await store.close()
    usage: dict[str, dict[str, int]] = {}
    for event in events:
        request_id, _, kind = event.transaction_id.rpartition(":")
        usage.setdefault(request_id, {})[kind] = int(event.properties["tokens"])
    return usage


async def test_a_poisoned_event_beside_concurrent_chats_fails_alone(
    pg_url: str,
    simulator: SimulatorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(pg_url, simulator.base_url, tmp_path)
    with BackgroundServer(create_app(settings), lifespan="on", name="gateway") as server:
        key, subscription = await _key(settings)
        chats: list[httpx.Response] = []
        poisoned: list[httpx.Response] = []
        limits = httpx.Limits(max_connections=CHATS + 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:

            async def chats_of(worker: int) -> None:
                headers = {"Authorization": f"Bearer {key}"}
                for n in range(worker, CHATS * ROUNDS, CHATS):
                    words = "word " * (n % 9)
                    body = {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"chat {n} {words}"}],
                    }
                    chats.append(
                        await client.post("/v1/chat/completions", json=body, headers=headers)
                    )

            async def poison_while(working: asyncio.Future[Any]) -> None:
                headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
                headers["Content-Type"] = "application/json"
                n = 0
                while not working.done():  # one after another, all through the chats
                    body = POISONS[n % len(POISONS)].replace(b"%d", str(n).encode())
                    body = body.replace(b"%s", subscription.encode())
                    poisoned.append(
                        await client.post("/api/v1/events", content=body, headers=headers)
                    )
                    n += 1

            with caplog.at_level(logging.ERROR, logger="tallygate"):
                working = asyncio.gather(*(chats_of(worker) for worker in range(CHATS)))
                await asyncio.gather(working, poison_while(working))

    # Every chat got its answer, with its usage stored exactly.
    assert [r.status_code for r in chats] == [200] * (CHATS * ROUNDS)
    stored = await _stored_usage(pg_url, subscription)
    for response in chats:
        usage: dict[str, Any] = response.json()["usage"]
        request_id = response.headers["x-request-id"]
        assert stored[request_id] == {
            "input": usage["prompt_tokens"],
            "output": usage["completion_tokens"],
        }
    assert len(stored) == CHATS * ROUNDS  # and nothing of the poisoned events
    assert len(poisoned) >= 2
    # Each poisoned event alone refused, in Lago's envelope.
    for response in poisoned:
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_errors"
        if response.json()["error_details"] == {"event": ["value_not_storable"]}:
            # Refused by the store: logged once under the API request's id.
            request_id = response.headers["x-request-id"]
            lines = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
            assert len(lines) == 1
            assert "usage not stored (the store refused a value" in lines[0]
    assert not [r for r in caplog.records if "Traceback" in r.getMessage() or r.exc_info]
