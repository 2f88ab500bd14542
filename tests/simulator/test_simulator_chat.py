"""Chat completions through the official SDK and raw HTTP: bodies, streams, usage, errors."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.simulator.helpers import CHAT, TEXT16, USER, chunks


def test_plain_answer_has_exact_usage_and_echoes_any_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="my-own-model", messages=USER)

    assert completion.object == "chat.completion"
    assert completion.model == "my-own-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == TEXT16
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 16, 25)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_usage_object_has_exactly_the_documented_keys(http: httpx.Client) -> None:
    body = http.post(CHAT, json={"model": "gpt-4o", "messages": USER}).json()

    assert body["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 16,
        "total_tokens": 25,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_prompt_rule_counts_content_parts_and_per_message_overhead(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be  brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "c d e"},
                {"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}},
            ],
        },
        {"role": "assistant", "content": None},
    ]
    completion = client.chat.completions.create(model="gpt-4o", messages=messages)

    # 3 priming + (3 + 2) + (3 + 3) + (3 + 0)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 17


def test_n_choices_and_max_tokens_cap(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="gpt-4o", messages=USER, n=3, max_tokens=5)

    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert {choice.message.content for choice in completion.choices} == {"w0 w1 w2 w3 w4"}
    assert {choice.finish_reason for choice in completion.choices} == {"length"}
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 15)


def test_max_completion_tokens_wins_over_max_tokens(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="o1", messages=USER, max_tokens=10, max_completion_tokens=2
    )

    assert completion.choices[0].message.content == "w0 w1"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


def test_stream_without_include_usage_carries_no_usage_key(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "gpt-4o", "messages": USER, "stream": True})

    assert response.headers["content-type"] == "text/event-stream"
    parsed = chunks(response.text)
    assert len(parsed) == 1 + 16 + 1  # role, one chunk per word, finish
    assert all("usage" not in chunk for chunk in parsed)
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in parsed)
    assert text == TEXT16
    assert parsed[-1]["choices"][0]["finish_reason"] == "stop"
    assert {chunk["object"] for chunk in parsed} == {"chat.completion.chunk"}


def test_stream_with_include_usage_has_one_usage_chunk_last(http: httpx.Client) -> None:
    request = {
        "model": "gpt-4o",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parsed = chunks(http.post(CHAT, json=request).text)

    with_usage = [chunk for chunk in parsed if chunk["usage"] is not None]
    assert with_usage == [parsed[-1]]
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["prompt_tokens"] == 9
    assert parsed[-1]["usage"]["completion_tokens"] == 16
    # Every other chunk carries an explicit null, as OpenAI sends it.
    assert all("usage" in chunk and chunk["usage"] is None for chunk in parsed[:-1])


def test_sdk_stream_sync_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    received = list(stream)

    usages = [chunk.usage for chunk in received if chunk.usage is not None]
    assert len(usages) == 1
    assert (usages[0].prompt_tokens, usages[0].completion_tokens, usages[0].total_tokens) == (
        9,
        16,
        25,
    )
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text == TEXT16


async def test_sdk_stream_async_with_n_choices(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o",
        messages=USER,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts = {0: "", 1: ""}
    usages = []
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
        if chunk.usage is not None:
            usages.append(chunk.usage)

    assert texts == {0: TEXT16, 1: TEXT16}
    assert len(usages) == 1
    assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (9, 32)


def test_stream_options_without_stream_is_rejected(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=USER, stream_options={"include_usage": True}
        )

    assert caught.value.param == "stream_options"


def test_malformed_json_is_400_in_openai_envelope(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b'{"model": "gpt-4o", "messages": [', headers=_JSON)

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in error["message"]


def test_missing_messages_names_the_parameter(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "gpt-4o"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("messages", "missing_required_parameter")


def test_missing_model_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="", messages=USER)

    assert caught.value.param == "model"


def test_wrong_type_is_400_naming_the_field(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "gpt-4o", "messages": USER, "n": "two"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"


def test_empty_messages_is_400(http: httpx.Client) -> None:
    response = http.post(CHAT, json={"model": "gpt-4o", "messages": []})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_array"


def test_each_response_has_a_request_id(http: httpx.Client) -> None:
    first = http.post(CHAT, json={"model": "gpt-4o", "messages": USER})
    second = http.post(CHAT, json={"model": "gpt-4o", "messages": USER})

    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert first.json()["id"] != second.json()["id"]


_JSON = {"content-type": "application/json"}
