"""Legacy completions, embeddings, Responses, models, routing, Azure paths and API keys."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.simulator import SimulatorConfig, SimulatorServer
from tests.simulator.helpers import TEXT16, chunks, events

# Legacy completions


@pytest.mark.parametrize(
    ("prompt", "prompt_tokens", "prompts"),
    [
        ("a b c", 3, 1),
        (["a b", "c d e"], 5, 2),
        ([11, 12, 13, 14], 4, 1),
        ([[1, 2], [3, 4, 5]], 5, 2),
    ],
)
def test_completions_prompt_shapes(
    client: openai.OpenAI,
    prompt: str | list[str] | list[int] | list[list[int]],
    prompt_tokens: int,
    prompts: int,
) -> None:
    completion = client.completions.create(model="davinci-002", prompt=prompt, n=2)

    assert completion.object == "text_completion"
    assert len(completion.choices) == prompts * 2
    assert {choice.text for choice in completion.choices} == {TEXT16}
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == prompts * 2 * 16


def test_completions_stream_with_usage(http: httpx.Client) -> None:
    request = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "say hi",
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parsed = chunks(http.post("/v1/completions", json=request).text)

    assert "".join(chunk["choices"][0]["text"] for chunk in parsed[:-1]) == "w0 w1 w2 w3"
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["prompt_tokens"] == 2
    assert parsed[-1]["usage"]["completion_tokens"] == 4
    assert all(chunk["usage"] is None for chunk in parsed[:-1])


def test_completions_reject_mixed_prompt(http: httpx.Client) -> None:
    response = http.post("/v1/completions", json={"model": "m", "prompt": [1, "a"]})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


# Embeddings


def test_embeddings_base64_default_of_sdk_matches_floats(client: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    implicit = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    explicit = client.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
    )

    assert [item.embedding for item in implicit.data] == [item.embedding for item in explicit.data]
    assert len(implicit.data[0].embedding) == 8
    assert implicit.data[0].embedding != implicit.data[1].embedding
    assert (implicit.usage.prompt_tokens, implicit.usage.total_tokens) == (3, 3)


def test_embeddings_are_deterministic_and_honour_dimensions(client: openai.OpenAI) -> None:
    first = client.embeddings.create(model="m", input="same text", dimensions=5)
    second = client.embeddings.create(model="m", input="same text", dimensions=5)

    assert len(first.data[0].embedding) == 5
    assert first.data[0].embedding == second.data[0].embedding
    assert first.model == "m"


def test_embeddings_token_arrays(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="m", input=[[1, 2, 3], [4]])

    assert [item.index for item in result.data] == [0, 1]
    assert result.usage.prompt_tokens == 4


# Responses


def test_responses_plain_usage(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-4o", input="a b c", instructions="x y")

    assert response.status == "completed"
    assert response.output_text == TEXT16
    assert response.usage is not None
    # 3 priming + 2 instruction words + (3 + 3) for the string input
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 16)
    assert response.usage.total_tokens == 27
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


def test_responses_list_input_and_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-4o",
        input=[
            {"role": "user", "content": "a b"},
            {"role": "user", "content": [{"type": "input_text", "text": "c"}]},
        ],
        max_output_tokens=4,
    )

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "w0 w1 w2 w3"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 4)


def test_responses_stream_helper_reaches_completed(client: openai.OpenAI) -> None:
    with client.responses.stream(model="gpt-4o", input="hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()

    assert kinds[-1] == "response.completed"
    assert final.output_text == TEXT16
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 16)


async def test_responses_async_stream_terminal_event_has_usage(
    aclient: openai.AsyncOpenAI,
) -> None:
    stream = await aclient.responses.create(
        model="gpt-4o", input="hello", stream=True, max_output_tokens=3
    )
    received = [event async for event in stream]

    terminal = received[-1]
    assert terminal.type == "response.incomplete"
    assert terminal.response.usage is not None
    assert terminal.response.usage.output_tokens == 3
    assert [event.sequence_number for event in received] == list(range(len(received)))


def test_responses_stream_wire_format(http: httpx.Client) -> None:
    body = http.post("/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": True}).text
    parsed = events(body)

    names = [name for name, _ in parsed]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 16,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in parsed)
    assert [data["sequence_number"] for _, data in parsed] == list(range(len(parsed)))
    assert parsed[0][1]["response"]["usage"] is None
    assert parsed[-1][1]["response"]["usage"]["output_tokens"] == 16
    assert "[DONE]" not in body


# Models and routing


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]

    assert ids == [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4",
        "gpt-4-32k",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
    ]
    assert client.models.retrieve("gpt-4-32k").id == "gpt-4-32k"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_unknown_path_and_wrong_method(http: httpx.Client) -> None:
    missing = http.post("/v1/nothing-here", json={})
    wrong = http.get("/v1/chat/completions")

    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "Invalid URL (POST /v1/nothing-here)"
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "invalid_request_error"


# API keys and Azure paths


@pytest.fixture(scope="module")
def keyed() -> Iterator[SimulatorServer]:
    """A simulator that requires the key `sk-sim`."""
    with SimulatorServer(SimulatorConfig(api_key="sk-sim")) as server:
        yield server


def test_api_key_required_when_configured(keyed: SimulatorServer) -> None:
    with httpx.Client(base_url=keyed.url, trust_env=False) as raw:
        missing = raw.get("/v1/models")
        wrong = raw.get("/v1/models", headers={"authorization": "Bearer nope"})
        bearer = raw.get("/v1/models", headers={"authorization": "Bearer sk-sim"})
        azure = raw.get("/v1/models", headers={"api-key": "sk-sim"})

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] is None
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert (bearer.status_code, azure.status_code) == (200, 200)


def test_sdk_with_wrong_key_gets_authentication_error(keyed: SimulatorServer) -> None:
    with (
        openai.OpenAI(base_url=keyed.base_url, api_key="wrong", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_azure_deployment_path_names_the_model(keyed: SimulatorServer) -> None:
    keyed.control.clear_requests()
    with openai.AzureOpenAI(
        azure_endpoint=keyed.url, api_key="sk-sim", api_version="2024-06-01", max_retries=0
    ) as azure:
        completion = azure.chat.completions.create(
            model="my-deployment", messages=[{"role": "user", "content": "hi"}]
        )
        embedded = azure.embeddings.create(model="embed-deploy", input="a b")

    assert completion.model == "my-deployment"
    assert embedded.model == "embed-deploy"
    logged = keyed.control.requests()
    assert logged[0]["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert logged[0]["query"] == "api-version=2024-06-01"
    assert logged[0]["headers"]["api-key"] == "sk-sim"


def test_azure_path_without_model_in_body(keyed: SimulatorServer) -> None:
    with httpx.Client(base_url=keyed.url, trust_env=False) as raw:
        response = raw.post(
            "/openai/deployments/dep-1/completions?api-version=2024-06-01",
            json={"prompt": "x"},
            headers={"api-key": "sk-sim"},
        )

    assert response.status_code == 200
    assert response.json()["model"] == "dep-1"
