"""One poisoned record fails alone: Lago events a store could not hold are refused with Lago's
422 (single and batch, every issue listed, nothing stored), the other events' usage stays exact,
and rows an older version stored never stop a read or a restart of the real process."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import Event

from proxy.simulator import SimulatorServer
from tests.reliability.clients import chat_body
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import ADMIN_KEY, ServedGateway, served_gateway
from tests.support.postgres import create_schema, drop_schema, schema_url

CODE = "llm_tokens"
# JSON texts of `tokens` that older versions accepted with 200 (raw, as a client can send them).
ABSURD_TOKENS = {
    "1e1000000": ("1e1000000", "value_is_out_of_range"),
    "1e309": ("1e309", "value_is_out_of_range"),
    "-1e400": ("-1e400", "value_is_out_of_range"),
    "1e-400": ("1e-400", "value_is_out_of_range"),
    "5000 digits": ("1" * 5000, "value_is_out_of_range"),
    "5000 digit text": ('"' + "1" * 5000 + '"', "value_is_too_long"),
    "1e21 text": ('"1e21"', "value_is_out_of_range"),
    "NaN text": ('"NaN"', "value_is_invalid"),
    "Infinity text": ('"Infinity"', "value_is_invalid"),
    "-inf text": ('"-inf"', "value_is_invalid"),
}
LONG = "x" * 256
# Whole event JSON texts whose text fields no store can hold: (event JSON, field, code).
BAD_TEXT = {
    "NUL in transaction_id": (
        '"transaction_id": "a\\u0000b"',
        "transaction_id",
        "value_is_invalid",
    ),
    "lone surrogate in transaction_id": (
        '"transaction_id": "a\\ud800b"',
        "transaction_id",
        "value_is_invalid",
    ),
    "over-long transaction_id": (
        f'"transaction_id": "{LONG}"',
        "transaction_id",
        "value_is_too_long",
    ),
    "over-long subscription": (
        f'"transaction_id": "t", "external_subscription_id": "{LONG}"',
        "external_subscription_id",
        "value_is_too_long",
    ),
    "over-long code": (f'"transaction_id": "t", "code": "{LONG}"', "code", "value_is_too_long"),
    "NUL in a property value": (
        '"transaction_id": "t", "properties": {"model": "gpt\\u0000"}',
        "properties.model",
        "value_is_invalid",
    ),
    "lone surrogate in a property name": (
        '"transaction_id": "t", "properties": {"\\udc00": 1}',
        "properties",
        "value_is_invalid",
    ),
    "over-long property name": (
        f'"transaction_id": "t", "properties": {{"{LONG}": 1}}',
        "properties",
        "value_is_too_long",
    ),
}


def lago_422(response: httpx.Response) -> Any:
    """The ``error_details`` of Lago's validation envelope (asserting the envelope)."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"status", "error", "code", "error_details"}
    assert (body["status"], body["error"], body["code"]) == (
        422,
        "Unprocessable Entity",
        "validation_errors",
    )
    return body["error_details"]


def event_json(fields: str, subscription: str = "acme:llm_default") -> str:
    """An event object of the JSON ``fields``, with the code and subscription unless given."""
    defaults = {"code": CODE, "external_subscription_id": subscription}
    extra = "".join(f', "{k}": "{v}"' for k, v in defaults.items() if f'"{k}"' not in fields)
    return "{" + fields + extra + "}"


def tokens_event(transaction_id: str, tokens: str, subscription: str = "acme:llm_default") -> str:
    properties = f'{{"model": "gpt-4o-mini", "type": "input", "tokens": {tokens}}}'
    return event_json(
        f'"transaction_id": "{transaction_id}", "properties": {properties}', subscription
    )


def post(client: httpx.Client, path: str, body: str) -> httpx.Response:
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"})


def admin(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
    )


def stored_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        count: int = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return count


def refuse_everything_absurd(url: str, db: Path, subscription: str) -> None:
    """Every absurd event is a 422 on both routes, and nothing reaches the store."""
    before = stored_rows(db)
    with admin(url) as client:
        for name, (tokens, code) in ABSURD_TOKENS.items():
            single = post(
                client, "/events", f'{{"event": {tokens_event(name, tokens, subscription)}}}'
            )
            assert lago_422(single) == {"properties.tokens": [code]}, name
            # A batch with the bad event at index 1 between good ones: refused whole, keyed.
            events = [
                tokens_event(f"{name}-good-0", "12", subscription),
                tokens_event(f"{name}-bad", tokens, subscription),
                tokens_event(f"{name}-good-2", "30", subscription),
            ]
            batch = post(client, "/events/batch", f'{{"events": [{", ".join(events)}]}}')
            assert lago_422(batch) == {"1": {"properties.tokens": [code]}}, name
        for name, (fields, field, code) in BAD_TEXT.items():
            single = post(client, "/events", f'{{"event": {event_json(fields, subscription)}}}')
            assert lago_422(single) == {field: [code]}, name
            events = [
                tokens_event(f"{name}-good", "12", subscription),
                event_json(fields, subscription),
            ]
            batch = post(client, "/events/batch", f'{{"events": [{", ".join(events)}]}}')
            assert lago_422(batch) == {"1": {field: [code]}}, name
    assert stored_rows(db) == before


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> LocalGateway:
    return make_gateway()


def test_events_a_store_cannot_hold_are_refused_with_every_issue(gateway: LocalGateway) -> None:
    gateway.new_key()
    refuse_everything_absurd(gateway.url, gateway.db, "acme:llm_default")
    # Every issue of one event at once, and the good batch after all that is stored whole.
    with admin(gateway.url) as client:
        fields = (
            '"transaction_id": "a\\u0000", "code": "' + LONG + '", '
            '"properties": {"tokens": 1e400, "model": "NaN", "ok": 1}'
        )
        assert lago_422(post(client, "/events", f'{{"event": {event_json(fields)}}}')) == {
            "transaction_id": ["value_is_invalid"],
            "code": ["value_is_too_long"],
            "properties.tokens": ["value_is_out_of_range"],
            "properties.model": ["value_is_invalid"],
        }
        good = [
            tokens_event(f"fine-{n}", value)
            for n, value in enumerate(
                ["1", "99999999999999999999", "0.00000000000000000001", "-5.5"]
            )
        ]
        response = post(client, "/events/batch", f'{{"events": [{", ".join(good)}]}}')
        assert response.status_code == 200, response.text
    assert stored_rows(gateway.db) == 4


def test_the_unmodified_lago_client_gets_the_422(gateway: LocalGateway) -> None:
    lago = Client(api_key=ADMIN_KEY, api_url=gateway.url)
    cases = [
        ({"transaction_id": "a\x00b"}, {"transaction_id": ["value_is_invalid"]}),
        ({"transaction_id": LONG}, {"transaction_id": ["value_is_too_long"]}),
        (
            {"transaction_id": "t", "properties": {"tokens": "NaN"}},
            {"properties.tokens": ["value_is_invalid"]},
        ),
        (
            {"transaction_id": "t", "properties": {"tokens": "Infinity"}},
            {"properties.tokens": ["value_is_invalid"]},
        ),
        (
            {"transaction_id": "t", "properties": {"tokens": 1e300}},
            {"properties.tokens": ["value_is_out_of_range"]},
        ),
    ]
    for fields, details in cases:
        with pytest.raises(LagoApiError) as error:
            lago.events.create(
                Event(code=CODE, external_subscription_id="acme:llm_default", **fields)  # type: ignore[arg-type]
            )
        assert error.value.status_code == 422
        assert error.value.response["error_details"] == details
    assert gateway.event_count() == 0


def chat_tokens(url: str, key: str) -> int:
    response = httpx.post(
        f"{url}/v1/chat/completions",
        json=chat_body(False),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    tokens: int = response.json()["usage"]["total_tokens"]
    return tokens


def usage_tokens(url: str, key: str) -> int:
    response = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert response.status_code == 200, response.text
    return sum(row["tokens"] for row in response.json()["key_usage"]["breakdown"])


def current_usage_units(url: str, customer: str, subscription: str) -> int:
    with admin(url) as client:
        response = client.get(
            f"/customers/{customer}/current_usage",
            params={"external_subscription_id": subscription},
        )
    assert response.status_code == 200, response.text
    usage = response.json()["customer_usage"]
    return sum(int(charge["units"].split(".")[0]) for charge in usage["charges_usage"])


def test_a_negative_absurd_value_never_shrinks_the_bill(
    gateway: LocalGateway, simulator: SimulatorServer
) -> None:
    """The issue's case: -1e400 made 3,840 tokens of chats show as 1,280."""
    probe = gateway.new_key("probe")
    prompt = chat_tokens(gateway.url, probe) - 16  # the simulator's default completion
    simulator.control.set_faults(completion_tokens=1280 - prompt)
    key = gateway.new_key("acme")
    assert [chat_tokens(gateway.url, key) for _ in range(3)] == [1280, 1280, 1280]
    with admin(gateway.url) as client:
        response = post(client, "/events", f'{{"event": {tokens_event("neg", "-1e400")}}}')
        assert lago_422(response) == {"properties.tokens": ["value_is_out_of_range"]}
    assert usage_tokens(gateway.url, key) == 3840
    assert current_usage_units(gateway.url, "acme", "acme:llm_default") == 3840


# -- the real process: a restart after attempts, and rows an older version stored -------------


def tamper_like_an_older_version(db: Path, subscription: str) -> None:
    """What older versions stored for the absurd events (values as JSON text, NaN included),
    left unfolded, and a rollup total no sum of domain values can be."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        now_us = int(time.time() * 1_000_000)
        for n, tokens in enumerate(["1e1000000", "1e309", "-1e400", "NaN", "1" * 5000]):
            properties = f'{{"model": "gpt-4o-mini", "type": "input", "tokens": {tokens}}}'
            conn.execute(
                "INSERT INTO events (transaction_id, external_subscription_id, code, ts, "
                "created_us, id, properties) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (f"old-{n}", subscription, CODE, now_us, now_us, f"ev-old-{n}", properties),
            )
        conn.execute("UPDATE rollups SET total = 'NaN'")
    finally:
        conn.close()


def test_a_restart_after_absurd_events_and_old_rows_starts_and_serves(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    served: ServedGateway = served_gateway(tmp_path, simulator.base_url)
    key = served.create_key("acme")
    served.start()
    try:
        used = chat_tokens(served.url, key) + chat_tokens(served.url, key)
        refuse_everything_absurd(served.url, served.db, "acme:llm_default")
    finally:
        served.stop()
    tamper_like_an_older_version(served.db, "acme:llm_default")
    served.start()  # folds the old rows at start: this must not fail
    try:
        assert usage_tokens(served.url, key) == used
        assert current_usage_units(served.url, "acme", "acme:llm_default") == used
        used += chat_tokens(served.url, key)
        assert usage_tokens(served.url, key) == used
    finally:
        served.stop()
    served.start()  # and once more, on the file this process left
    try:
        assert usage_tokens(served.url, key) == used
    finally:
        served.stop()
    assert "Traceback" not in served.log()


# -- the same app on PostgreSQL: NUMERIC holds NaN, and text with NUL is no id at all ----------


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = asyncio.run(create_schema("tg_poisoned"))
    try:
        yield schema_url(schema)
    finally:
        asyncio.run(drop_schema(schema))


async def pg_tamper(url: str, subscription: str) -> None:
    """What older versions stored on PostgreSQL: odd numbers as JSON text, NaN rollups."""
    conn = await asyncpg.connect(url)
    try:
        now_us = int(time.time() * 1_000_000)
        for n, tokens in enumerate(["1e1000000", "-1e400", "NaN", "1" * 5000]):
            properties = f'{{"model": "gpt-4o-mini", "type": "input", "tokens": {tokens}}}'
            await conn.execute(
                "INSERT INTO events (transaction_id, external_subscription_id, code, ts, "
                "created_us, id, properties) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                f"old-{n}",
                subscription,
                CODE,
                now_us,
                now_us,
                f"ev-old-{n}",
                properties,
            )
        await conn.execute("UPDATE rollups SET total = 'NaN', maximum = 'Infinity'")
    finally:
        await conn.close()


def test_on_postgres_usage_stays_exact_and_odd_ids_are_no_500(
    make_gateway: GatewayFactory, pg_url: str
) -> None:
    gateway = make_gateway(store={"url": pg_url})
    subscription = "acme:pg"
    with admin(gateway.url) as client:
        customer = {"external_id": "acme", "currency": "USD"}
        assert client.post("/customers", json={"customer": customer}).status_code == 200
        body = {
            "external_customer_id": "acme",
            "plan_code": "llm_default",
            "external_id": subscription,
        }
        assert client.post("/subscriptions", json={"subscription": body}).status_code == 200
        good = [tokens_event(f"good-{n}", "1280", subscription) for n in range(3)]
        assert (
            post(client, "/events/batch", f'{{"events": [{", ".join(good)}]}}').status_code == 200
        )
        bad = post(client, "/events", f'{{"event": {tokens_event("neg", "-1e400", subscription)}}}')
        assert lago_422(bad) == {"properties.tokens": ["value_is_out_of_range"]}
        nul_id = event_json('"transaction_id": "a\\u0000"', subscription)
        nul = post(client, "/events", f'{{"event": {nul_id}}}')
        assert lago_422(nul) == {"transaction_id": ["value_is_invalid"]}
        assert current_usage_units(gateway.url, "acme", subscription) == 3840
        asyncio.run(pg_tamper(pg_url, subscription))
        assert current_usage_units(gateway.url, "acme", subscription) == 3840
        # Ids PostgreSQL cannot hold name nothing: Lago's 404 and 405, never a 500.
        assert client.get("/events/a%00b").status_code == 404
        assert (
            client.get("/events/good-0", params={"external_subscription_id": "a\x00"}).status_code
            == 404
        )
        assert (
            client.get(
                "/customers/a%00/current_usage", params={"external_subscription_id": subscription}
            ).status_code
            == 404
        )
        usage = client.get(
            "/customers/acme/current_usage", params={"external_subscription_id": "s\x00"}
        )
        assert usage.status_code == 405


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_admin_inputs_with_text_no_store_can_hold_are_a_422_and_store_nothing(
    make_gateway: GatewayFactory, request: pytest.FixtureRequest, store: str
) -> None:
    """A NUL anywhere in a customer, metric, plan or subscription (PostgreSQL's ``text``
    cannot hold one: a 500 there before) is Lago's 422 naming the field; nothing is stored."""
    url = request.getfixturevalue("pg_url") if store == "postgres" else None
    gateway = make_gateway(store={"url": url} if url else {})
    with admin(gateway.url) as client:
        nul_id = {"external_id": "acme\u0000", "currency": "USD"}
        assert lago_422(client.post("/customers", json={"customer": nul_id})) == {
            "external_id": ["value_is_invalid"]
        }
        nested = {"external_id": "acme", "metadata": [{"key": "k", "value": "v\u0000"}]}
        assert lago_422(client.post("/customers", json={"customer": nested})) == {
            "metadata": ["value_is_invalid"]
        }
        assert client.get("/customers/acme").status_code == 404
        metric = {"name": "m", "code": "m\u0000", "aggregation_type": "count_agg"}
        assert lago_422(client.post("/billable_metrics", json={"billable_metric": metric})) == {
            "code": ["value_is_invalid"]
        }
        plan = {"name": "p", "code": "p", "interval": "monthly", "amount_cents": 0}
        plan |= {"amount_currency": "USD", "description": "\u0000"}
        assert lago_422(client.post("/plans", json={"plan": plan})) == {
            "description": ["value_is_invalid"]
        }
        assert client.get("/plans/p").status_code == 404
        # The same inputs without the NUL are served: the refusal is about the text alone.
        assert client.post("/customers", json={"customer": {"external_id": "acme"}}).is_success
