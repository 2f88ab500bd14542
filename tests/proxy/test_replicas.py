"""Two ``tallygate serve`` processes on one PostgreSQL schema, as replicas behind a balancer.

Concurrent plain and streamed chat through both, and the same Lago events sent to both: the
metered usage equals what the simulated upstream reported on the wire, exactly, whichever
replica answers; every duplicate is stored once; a key revoked from the command line stops
working on both replicas once their key cache bound has passed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.simulator import SimulatorServer
from tests.proxy.test_demo_and_serve import free_port, wait_healthy
from tests.support.postgres import create_schema, drop_schema, schema_url

pytestmark = pytest.mark.slow

ADMIN_KEY = "admin-replicas"
MODEL = "gpt-4o-mini"
CACHE_SECONDS = 1.0
PLAIN = STREAMED = 40
LAGO_EVENTS = 30

CONFIG = """
use_default_catalog = false

[upstreams.sim]
base_url = "{base_url}"

[models."gpt-4o-mini"]
upstream = "sim"
input_per_1m = "0.15"
output_per_1m = "0.6"

[models."gpt-4o"]
upstream = "sim"
input_per_1m = "2.5"
output_per_1m = "10"
"""


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = asyncio.run(create_schema("tg_replicas"))
    try:
        yield schema_url(schema)
    finally:
        asyncio.run(drop_schema(schema))


def tallygate(*args: str, env: dict[str, str], cwd: Path) -> str:
    script = Path(sys.executable).with_name("tallygate")
    done = subprocess.run(
        [str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def field(printed: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(\S+)$", printed, re.MULTILINE)
    assert match is not None, printed
    return match.group(1)


async def drive(bases: list[str], key: str, subscription: str) -> dict[str, list[int]]:
    """Plain and streamed chats spread over the replicas, and every Lago event sent to both."""
    clients = [openai.AsyncOpenAI(base_url=f"{b}/v1", api_key=key, max_retries=0) for b in bases]
    admin = httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    limit = asyncio.Semaphore(16)
    statuses: dict[str, list[int]] = {}

    async def chat(n: int) -> None:
        client = clients[n % len(clients)]
        messages = [{"role": "user", "content": f"request {n}: " + "words " * (n % 7)}]
        async with limit:
            if n < PLAIN:
                reply = await client.chat.completions.create(model=MODEL, messages=messages)
                assert reply.usage is not None
                return
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages, stream=True
            )
            async for _ in stream:
                pass

    async def lago_event(n: int, base: str) -> None:
        event = {
            "transaction_id": f"lago-{n}",
            "external_subscription_id": subscription,
            "code": "llm_tokens",
            "properties": {"model": "gpt-4o", "type": "input", "tokens": n + 1},
        }
        async with limit:
            response = await admin.post(f"{base}/api/v1/events", json={"event": event})
        statuses.setdefault(f"lago-{n}", []).append(response.status_code)

    try:
        work = [chat(n) for n in range(PLAIN + STREAMED)]
        work += [lago_event(n, base) for n in range(LAGO_EVENTS) for base in bases]
        await asyncio.gather(*work)
    finally:
        await admin.aclose()
        for client in clients:
            await client.close()
    return statuses


def usage(base: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/v1/usage", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_two_replicas_meter_exactly_once(tmp_path: Path, pg_url: str) -> None:
    with SimulatorServer() as sim:
        config = tmp_path / "tallygate.toml"
        config.write_text(CONFIG.format(base_url=sim.base_url))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYGATE_")}
        env |= {
            "TALLYGATE_CONFIG": str(config),
            "TALLYGATE_STORE__URL": pg_url,
            "TALLYGATE_ADMIN_KEY": ADMIN_KEY,
            "TALLYGATE_SERVER__KEY_CACHE_SECONDS": str(CACHE_SECONDS),
        }
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        logs = [tmp_path / f"replica{n}.log" for n in range(len(ports))]
        script = Path(sys.executable).with_name("tallygate")
        outputs = [log.open("w") for log in logs]
        # Both start at once on an empty schema: the migrations race for the advisory lock.
        replicas = [
            subprocess.Popen(
                [str(script), "serve", "--port", str(port)],
                env=env,
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            for port, output in zip(ports, outputs, strict=True)
        ]
        try:
            for base, replica in zip(bases, replicas, strict=True):
                wait_healthy(base, replica)  # type: ignore[arg-type]
            printed = tallygate("keys", "create", "--customer", "acme", env=env, cwd=tmp_path)
            key, key_id = field(printed, "api key"), field(printed, "key id")
            subscription = field(printed, "subscription")
            statuses = asyncio.run(drive(bases, key, subscription))

            # Every Lago transaction id went to both replicas: stored once, refused once.
            assert {tid: sorted(codes) for tid, codes in statuses.items()} == {
                f"lago-{n}": [200, 422] for n in range(LAGO_EVENTS)
            }
            wire = sim.control.stats()["usage"]
            assert wire["responses"] == PLAIN + STREAMED
            expected = {
                (MODEL, "input"): wire["prompt_tokens"] - wire["cached_tokens"],
                (MODEL, "output"): wire["completion_tokens"],
            }
            lago_tokens = sum(n + 1 for n in range(LAGO_EVENTS))
            for base in bases:
                body = usage(base, key)
                rows = body["key_usage"]["breakdown"]
                assert {(r["model"], r["type"]): r["tokens"] for r in rows} == expected
                (charge,) = body["customer_usage"]["charges_usage"]
                assert float(charge["units"]) == wire["total_tokens"] + lago_tokens

            # Revoked through the shared store: refused by both replicas within the bound.
            assert "revoked" in tallygate("keys", "revoke", key_id, env=env, cwd=tmp_path)
            time.sleep(CACHE_SECONDS + 0.2)
            for base in bases:
                response = httpx.get(f"{base}/v1/usage", headers={"Authorization": f"Bearer {key}"})
                assert response.status_code == 401
        finally:
            for replica in replicas:
                replica.send_signal(signal.SIGINT)
            for replica in replicas:
                replica.wait(timeout=30)
            for output in outputs:
                output.close()
    assert [replica.returncode for replica in replicas] == [0, 0]
    for log in logs:
        text = log.read_text()
        assert "deadlock" not in text.lower(), text
        assert "Traceback" not in text, text
