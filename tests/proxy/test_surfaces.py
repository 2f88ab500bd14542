"""Every OpenAI surface through the gateway with the official SDK; /v1/usage sums what the
client saw."""

from __future__ import annotations

import openai
import pytest

from proxy.simulator import SimulatorServer
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import usage_of


@pytest.fixture
def client(gateway: Gateway, api_key: str) -> openai.OpenAI:
    return gateway.client(api_key)


def breakdown(gateway: Gateway, key: str) -> dict[tuple[str, str], int]:
    rows = usage_of(gateway, key)["key_usage"]["breakdown"]
    return {(row["model"], row["type"]): row["tokens"] for row in rows}


def test_legacy_completions_plain_and_streamed(
    gateway: Gateway, api_key: str, client: openai.OpenAI
) -> None:
    plain = client.completions.create(model="gpt-3.5-turbo", prompt="one two three")
    assert plain.usage is not None
    streamed = list(
        client.completions.create(
            model="gpt-3.5-turbo",
            prompt=["a b", "c d e"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    (last,) = [c for c in streamed if c.usage is not None]
    assert last.usage is not None
    assert breakdown(gateway, api_key) == {
        ("gpt-3.5-turbo", "input"): plain.usage.prompt_tokens + last.usage.prompt_tokens,
        ("gpt-3.5-turbo", "output"): plain.usage.completion_tokens + last.usage.completion_tokens,
    }


def test_embeddings_meter_input_only(gateway: Gateway, api_key: str, client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["red green", "blue"])
    assert len(result.data) == 2
    assert breakdown(gateway, api_key) == {
        ("text-embedding-3-small", "input"): result.usage.prompt_tokens
    }


def test_responses_plain_and_streamed(
    gateway: Gateway, api_key: str, client: openai.OpenAI, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(reasoning_tokens=4)
    plain = client.responses.create(
        model="o4-mini", input="think about this", instructions="be brief"
    )
    assert plain.usage is not None
    events = list(client.responses.create(model="o4-mini", input="again please", stream=True))
    terminal = events[-1]
    assert terminal.type == "response.completed"
    assert terminal.response.usage is not None
    total_in = plain.usage.input_tokens + terminal.response.usage.input_tokens
    total_out = plain.usage.output_tokens + terminal.response.usage.output_tokens
    # Reasoning tokens are inside output_tokens and billed as output, never added on top.
    assert breakdown(gateway, api_key) == {
        ("o4-mini", "input"): total_in,
        ("o4-mini", "output"): total_out,
    }


def test_models_list_and_get(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert "gpt-4o" in ids
    assert "gpt-4-32k" in ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-99")


def test_embeddings_refuse_stream(gateway: Gateway, api_key: str) -> None:
    import httpx

    response = httpx.post(
        f"{gateway.base_url}/embeddings",
        json={"model": "text-embedding-3-small", "input": "x", "stream": True},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"
