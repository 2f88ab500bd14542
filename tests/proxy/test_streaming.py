"""Streaming chat through the gateway with the official SDK: exact usage, or honestly estimated."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES, stored_events, usage_of


def rows(gateway: Gateway, key: str) -> dict[str, Any]:
    return {row["type"]: row["tokens"] for row in usage_of(gateway, key)["key_usage"]["breakdown"]}


def test_stream_without_include_usage_is_metered_and_clean(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    client = gateway.client(api_key)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)  # no choices == [] chunk reaches this client
    assert all(c.usage is None for c in chunks)
    reported = simulator.control.stats()["usage"]
    assert rows(gateway, api_key) == {
        "input": reported["prompt_tokens"],
        "output": reported["completion_tokens"],
    }
    (forwarded,) = simulator.control.requests()
    assert '"include_usage":true' in forwarded["body"].replace(" ", "")


def test_stream_with_include_usage_gets_exactly_one_usage_chunk(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(usage_twice=True)
    client = gateway.client(api_key)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    usage = usage_chunks[0].usage
    assert usage is not None
    assert rows(gateway, api_key) == {
        "input": usage.prompt_tokens,
        "output": usage.completion_tokens,
    }


async def test_async_stream_with_cumulative_usage_is_not_summed(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(usage_every_chunk=True)
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0)
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    await client.close()
    assert "".join(texts)
    async with httpx.AsyncClient() as http:
        body = (
            await http.get(
                f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {api_key}"}
            )
        ).json()
    breakdown = {row["type"]: row["tokens"] for row in body["key_usage"]["breakdown"]}
    assert breakdown["output"] == 16  # the simulator's default completion, once


def test_upstream_rejecting_stream_options_is_retried_once_and_remembered(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(reject_stream_options=True)
    client = gateway.client(api_key)
    for _ in range(2):
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            if c.choices
        )
    # 1st call: rejected + retried; 2nd: sent without the parameter straight away.
    assert simulator.control.stats()["total_requests"] == 3
    counter = TokenCounter()
    assert rows(gateway, api_key) == {
        "input": 2 * counter.count_chat_prompt(MESSAGES, "gpt-4o"),
        "output": 2 * counter.count_completion([text], "gpt-4o"),
    }
    assert {e.properties["usage_source"] for e in stored_events(gateway)} == {"estimated"}


def test_a_400_about_the_clients_own_stream_options_does_not_switch_injection_off(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(reject_stream_options=True, times=1)
    client = gateway.client(api_key)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    assert simulator.control.stats()["total_requests"] == 1  # passed through, not retried
    # The next client, without stream_options, still gets them injected: exact usage.
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass
    sent = json.loads(simulator.control.requests()[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    assert {e.properties["usage_source"] for e in stored_events(gateway)} == {"upstream"}


def test_stream_cut_by_upstream_meters_what_was_streamed(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(cut_after=5)
    client = gateway.client(api_key)
    received: list[str] = []

    def read() -> None:
        for c in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            if c.choices and c.choices[0].delta.content:
                received.append(c.choices[0].delta.content)

    with pytest.raises(openai.APIError) as raised:  # the gateway's error event ends the stream
        read()
    assert raised.value.code == "upstream_stream_interrupted"
    text = "".join(received)
    assert 0 < len(received) < 16
    counter = TokenCounter()
    assert rows(gateway, api_key) == {
        "input": counter.count_chat_prompt(MESSAGES, "gpt-4o"),
        "output": counter.count_completion([text], "gpt-4o"),
    }


def test_client_disconnect_still_meters_generated_tokens(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(never_end=True, chunk_delay_ms=20)
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            f"{gateway.base_url}/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {api_key}"},
        ) as response,
    ):
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("data:")
            if seen >= 4:
                break
    deadline = time.monotonic() + 10
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and "output" not in found:
        time.sleep(0.1)
        found = rows(gateway, api_key)
    assert found["input"] == TokenCounter().count_chat_prompt(MESSAGES, "gpt-4o")
    assert found["output"] >= 3  # at least what the client saw was billed
    assert {e.properties["usage_source"] for e in stored_events(gateway)} == {"estimated"}
