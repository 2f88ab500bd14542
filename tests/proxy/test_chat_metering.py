"""The first path end to end: OpenAI SDK -> gateway -> simulator, usage in SQLite, /v1/usage."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from metering.models import Event
from metering.store.sqlite import SQLiteStore
from proxy.app import sqlite_path
from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from tests.proxy.conftest import Gateway

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the metering engine please"},
]


def stored_events(gateway: Gateway) -> list[Event]:
    """Every event in the gateway's SQLite file, read through a second connection."""

    async def read() -> list[Event]:
        store = SQLiteStore(sqlite_path(gateway.settings.store.url))
        await store.open()
        try:
            subscriptions = await store.list_subscriptions()
            events: list[Event] = []
            for sub in subscriptions.items:
                events += await store.list_events(
                    external_subscription_id=sub.external_id,
                    code="llm_tokens",
                    from_ts=None,
                    to_ts=datetime.now(UTC),
                )
            return events
        finally:
            await store.close()

    return asyncio.run(read())


def usage_of(gateway: Gateway, key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bucket(usage: dict[str, Any], model: str, token_type: str) -> dict[str, Any]:
    (charge,) = usage["charges_usage"]
    for entry in charge["filters"]:
        if entry["values"] == {"model": [model], "type": [token_type]}:
            return dict(entry)
    raise AssertionError(f"no bucket for {model}/{token_type}")


def test_sdk_chat_completion_is_metered_exactly(gateway: Gateway, api_key: str) -> None:
    client = gateway.client(api_key)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.usage is not None
    prompt, completion = reply.usage.prompt_tokens, reply.usage.completion_tokens
    assert prompt > 0
    assert completion > 0

    body = usage_of(gateway, api_key)
    customer = body["customer_usage"]
    assert bucket(customer, "gpt-4o-mini", "input")["units"] == f"{prompt}.0"
    assert bucket(customer, "gpt-4o-mini", "output")["units"] == f"{completion}.0"
    assert bucket(customer, "gpt-4o-mini", "cached_input")["units"] == "0.0"
    assert bucket(customer, "gpt-4o-mini", "input")["events_count"] == 1
    # Package pricing per started 1,000 tokens: 0.15 $/1M input -> $0.00015 per package.
    (charge,) = customer["charges_usage"]
    expected = Decimal("0.00015") * math.ceil(prompt / 1000) + Decimal("0.0006") * math.ceil(
        completion / 1000
    )
    assert charge["amount_cents"] == int((expected * 100).quantize(Decimal(1), "ROUND_HALF_UP"))
    assert charge["billable_metric"]["code"] == "llm_tokens"
    assert customer["currency"] == "USD"
    # The key's own share, flattened for dashboards.
    breakdown = {
        (row["model"], row["type"]): row["tokens"] for row in body["key_usage"]["breakdown"]
    }
    assert breakdown == {("gpt-4o-mini", "input"): prompt, ("gpt-4o-mini", "output"): completion}
    events = stored_events(gateway)
    assert {e.properties["usage_source"] for e in events} == {"upstream"}
    assert sum(int(e.properties["tokens"]) for e in events) == reply.usage.total_tokens
    assert len({e.transaction_id.rsplit(":", 1)[0] for e in events}) == 1


def test_cached_tokens_are_split_out_and_sum_to_the_total(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(cached_tokens=5)
    client = gateway.client(api_key)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.usage is not None
    assert reply.usage.prompt_tokens_details is not None
    cached = reply.usage.prompt_tokens_details.cached_tokens
    assert cached == 5
    rows = {
        (row["model"], row["type"]): row["tokens"]
        for row in usage_of(gateway, api_key)["key_usage"]["breakdown"]
    }
    assert rows == {
        ("gpt-4o", "input"): reply.usage.prompt_tokens - cached,
        ("gpt-4o", "cached_input"): cached,
        ("gpt-4o", "output"): reply.usage.completion_tokens,
    }
    assert sum(rows.values()) == reply.usage.total_tokens


async def test_async_sdk_concurrent_requests_all_metered(gateway: Gateway, api_key: str) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0)
    replies = await asyncio.gather(
        *(
            client.chat.completions.create(
                model="gpt-4",
                messages=[{"role": "user", "content": "word " * (i + 1)}],
            )
            for i in range(20)
        )
    )
    await client.close()
    prompt = sum(r.usage.prompt_tokens for r in replies if r.usage)
    completion = sum(r.usage.completion_tokens for r in replies if r.usage)
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {api_key}"}
        )
    customer = response.json()["customer_usage"]
    assert bucket(customer, "gpt-4", "input")["units"] == f"{prompt}.0"
    assert bucket(customer, "gpt-4", "output")["units"] == f"{completion}.0"
    assert bucket(customer, "gpt-4", "input")["events_count"] == 20


def test_keys_sharing_a_subscription_see_their_own_share(gateway: Gateway) -> None:
    first = gateway.new_key("shared", name="one")
    second = gateway.new_key("shared", name="two")
    for key, repeat in ((first, 1), (second, 3)):
        client = gateway.client(key)
        for _ in range(repeat):
            client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    one, two = usage_of(gateway, first), usage_of(gateway, second)
    assert one["key"]["external_subscription_id"] == two["key"]["external_subscription_id"]
    total = bucket(one["customer_usage"], "gpt-4.1", "output")
    assert total == bucket(two["customer_usage"], "gpt-4.1", "output")
    own_one = bucket(one["key_usage"], "gpt-4.1", "output")
    own_two = bucket(two["key_usage"], "gpt-4.1", "output")
    assert (own_one["events_count"], own_two["events_count"], total["events_count"]) == (1, 3, 4)
    assert Decimal(own_one["units"]) + Decimal(own_two["units"]) == Decimal(total["units"])


def test_a_key_never_sees_another_customers_usage(gateway: Gateway) -> None:
    busy, idle = gateway.new_key("busy"), gateway.new_key("idle")
    client = gateway.client(busy)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    idle_usage = usage_of(gateway, idle)
    assert idle_usage["customer_usage"]["amount_cents"] == 0
    assert all(
        entry["units"] == "0.0"
        for charge in idle_usage["customer_usage"]["charges_usage"]
        for entry in charge["filters"]
    )
    assert usage_of(gateway, busy)["key_usage"]["breakdown"] != []


def test_upstream_without_usage_is_estimated_and_flagged(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(no_usage=True)
    client = gateway.client(api_key)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.usage is None
    rows = usage_of(gateway, api_key)["key_usage"]["breakdown"]
    types = {row["type"]: row["tokens"] for row in rows}
    counter = TokenCounter()
    text = reply.choices[0].message.content or ""
    assert text
    assert types == {
        "input": counter.count_chat_prompt(MESSAGES, "gpt-4o"),
        "output": counter.count_completion([text], "gpt-4o"),
    }
    assert simulator.control.stats()["usage"]["responses"] == 0
    sources = {e.properties["type"]: e.properties["usage_source"] for e in stored_events(gateway)}
    assert sources == {"input": "estimated", "output": "estimated"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "missing_api_key"), ({"Authorization": "Bearer tg-not-a-key"}, "invalid_api_key")],
)
def test_bad_keys_get_401_and_nothing_is_forwarded(
    gateway: Gateway, simulator: SimulatorServer, headers: dict[str, str], code: str
) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers=headers,
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert simulator.control.stats()["total_requests"] == 0


def test_sdk_sees_authentication_and_not_found_errors(gateway: Gateway, api_key: str) -> None:
    bad = gateway.client("tg-wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    good = gateway.client(api_key)
    with pytest.raises(openai.NotFoundError) as caught:
        good.chat.completions.create(model="gpt-99", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    assert usage_of(gateway, api_key)["key_usage"]["breakdown"] == []


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (b"{not json", "invalid_json", None),
        (b'{"messages": []}', "missing_required_parameter", "model"),
        (b'{"model": 5, "messages": []}', "invalid_type", "model"),
        (b"[1, 2]", "invalid_type", None),
    ],
)
def test_malformed_bodies_get_400_in_openai_envelope(
    gateway: Gateway, api_key: str, body: bytes, code: str, param: str | None
) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    assert error["message"]


def test_upstream_errors_pass_through_and_meter_nothing(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    client = gateway.client(api_key)
    simulator.control.set_faults(status=429, retry_after=7, times=1)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert limited.value.response.headers["retry-after"] == "7"
    simulator.control.set_faults(status=500, times=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert usage_of(gateway, api_key)["key_usage"]["breakdown"] == []


def test_response_carries_gateway_request_id_and_upstream_headers(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {api_key}", "Cookie": "session=1"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-upstream-request-id"]
    (forwarded,) = simulator.control.requests()
    sent = {name.lower() for name in forwarded["headers"]}
    assert "cookie" not in sent
    assert "authorization" not in sent  # the demo upstream has no key; the client's never goes
    assert forwarded["body"] == response.request.content.decode()


def test_oversized_body_gets_413(gateway: Gateway, api_key: str) -> None:
    limit = gateway.settings.server.max_body_bytes
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=b"x" * (limit + 1),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_health_and_readiness(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.server.url}/readyz").json() == {"status": "ready"}


def test_admin_paths_answer_in_lago_envelope(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.server.url}/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found"}
