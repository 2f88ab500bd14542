"""The injected ``stream_options``: a refusal is remembered only once proven, shown in
``/readyz``, cleared by an admin call, and forgotten after its time.

The real app (AsyncTestClient) in front of the real simulator on loopback, with a clock the
test moves. The simulator answers an unknown message role with OpenAI's own 400, which echoes
the client's value, as real upstreams do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from config import Settings, load_settings
from proxy.app import create_app
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import SimulatorServer
from tests.proxy.test_chat_metering import MESSAGES

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ADMIN = "admin-key-for-refusals"
TTL = 600.0
CLEAR = "/admin/v1/upstreams/simulator/stream_options_refusal"


class Clock:
    """The gateway's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Running:
    client: AsyncTestClient[Litestar]
    clock: Clock
    simulator: SimulatorServer
    key: str

    async def stream(self, messages: list[dict[str, Any]] = MESSAGES) -> tuple[int, str]:
        response = await self.client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": messages, "stream": True},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return response.status_code, response.text

    def forwarded(self) -> list[dict[str, Any]]:
        """The bodies the upstream received, oldest first."""
        return [json.loads(r["body"]) for r in self.simulator.control.requests()]

    async def sources(self) -> list[str]:
        """``usage_source`` of the output event of each metered request, in order."""
        gateway = self.client.app.state.gateway
        events = await gateway.store.list_events(
            external_subscription_id="acme:llm_default",
            code="llm_tokens",
            from_ts=None,
            to_ts=self.clock() + timedelta(days=1),
        )
        return [e.properties["usage_source"] for e in events if e.properties["type"] == "output"]

    async def readyz(self) -> dict[str, Any]:
        response = await self.client.get("/readyz")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def running(tmp_path: Path, simulator: SimulatorServer) -> AsyncIterator[Running]:
    settings: Settings = demo_settings(
        load_settings(env={}), upstream_url=simulator.base_url, db=tmp_path / "r.db", port=0
    )
    upstream = msgspec.structs.replace(
        settings.upstreams["simulator"], stream_options_refusal_seconds=TTL
    )
    settings = msgspec.structs.replace(
        settings,
        upstreams={"simulator": upstream},
        secrets={**settings.secrets, settings.admin.api_key_env: ADMIN},
    )
    clock = Clock(T0)
    async with AsyncTestClient(create_app(settings, clock=clock)) as client:
        store = client.app.state.gateway.store
        issued = await issue_key(store, settings, customer="acme", now=clock())
        yield Running(client, clock, simulator, issued.secret)


async def test_a_400_echoing_a_clients_value_never_switches_injection_off(
    running: Running,
) -> None:
    # The upstream's 400 quotes the client's role: it mentions "stream_options".
    status, text = await running.stream([{"role": "stream_options", "content": "hi"}])
    assert status == 400
    assert "Invalid value: 'stream_options'" in text
    # Sent again without the injected field to tell whose fault it was: still refused.
    sent = running.forwarded()
    assert [body.get("stream_options") for body in sent] == [{"include_usage": True}, None]
    assert "stream_options_refused_until" not in await running.readyz()
    # Everyone else's streams keep the injected field, and exact usage.
    for _ in range(2):
        status, _ = await running.stream()
        assert status == 200
    later = running.forwarded()[2:]
    assert [body["stream_options"] for body in later] == [{"include_usage": True}] * 2
    assert await running.sources() == ["upstream", "upstream"]


async def test_a_proven_refusal_is_remembered_shown_cleared_and_expires(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    running.simulator.control.set_faults(reject_stream_options=True)
    with caplog.at_level(logging.WARNING, logger="tallygate.upstream"):
        status, _ = await running.stream()
    assert status == 200
    assert len(running.forwarded()) == 2  # refused, then accepted without the field
    (line,) = [r.getMessage() for r in caplog.records if "stream_options" in r.getMessage()]
    assert "'simulator' refused the stream_options" in line
    assert CLEAR in line
    until = (T0 + timedelta(seconds=TTL)).isoformat()
    assert (await running.readyz())["stream_options_refused_until"] == {"simulator": until}

    # Remembered: the next stream goes without the field at once.
    await running.stream()
    assert len(running.forwarded()) == 3

    # The admin call clears it, behind the admin key.
    assert (await running.client.delete(CLEAR)).status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN}"}
    response = await running.client.delete(CLEAR, headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "upstream": "simulator",
        "cleared": True,
        "refused_until": until.replace("+00:00", "Z"),
    }
    assert "stream_options_refused_until" not in await running.readyz()
    missing = await running.client.delete(
        "/admin/v1/upstreams/nowhere/stream_options_refusal", headers=auth
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "upstream"

    # Injected again: refused again, remembered again from now.
    running.clock.now = T0 + timedelta(seconds=60)
    await running.stream()
    assert len(running.forwarded()) == 5
    refused = await running.readyz()
    assert refused["stream_options_refused_until"] == {
        "simulator": (running.clock.now + timedelta(seconds=TTL)).isoformat()
    }

    # Its time is up: injected again, and the upstream (fixed meanwhile) meters exactly.
    running.simulator.control.reset_faults()
    running.clock.now += timedelta(seconds=TTL)
    assert "stream_options_refused_until" not in await running.readyz()
    await running.stream()
    last = running.forwarded()[-1]
    assert len(running.forwarded()) == 6
    assert last["stream_options"] == {"include_usage": True}
    assert await running.sources() == ["estimated"] * 3 + ["upstream"]


async def test_the_admin_call_is_documented_in_the_served_openapi(running: Running) -> None:
    schema = (await running.client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/admin/v1/upstreams/{upstream}/stream_options_refusal"]["delete"]
    assert operation["security"] == [{"admin_key": []}]
    assert {"200", "401", "404"} <= set(operation["responses"])
    assert "stream_options_refusal_seconds" in operation["description"]
