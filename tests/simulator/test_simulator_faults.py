"""Every fault switch, through the control API and through `x-sim-*` headers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.simulator import Faults, SimulatorConfig, SimulatorServer
from tests.simulator.helpers import CHAT, TEXT16, USER, chunks, data_lines

STREAM_WITH_USAGE = {
    "model": "gpt-4o",
    "messages": USER,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def _chat(client: openai.OpenAI, **headers: str) -> object:
    return client.chat.completions.create(model="gpt-4o", messages=USER, extra_headers=headers)


# Status faults and their lifetime


def test_status_429_with_retry_after_persists_until_reset(
    sim: SimulatorServer, client: openai.OpenAI
) -> None:
    sim.control.set_faults(status=429, retry_after=3)

    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            _chat(client)
        assert caught.value.response.headers["retry-after"] == "3"
        assert caught.value.code == "rate_limit_exceeded"

    sim.control.reset_faults()
    assert _chat(client) is not None


def test_status_by_header_applies_to_that_request_only(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        _chat(client, **{"x-sim-status": "503"})

    assert caught.value.status_code == 503
    assert caught.value.type == "server_error"
    assert _chat(client) is not None


def test_times_clears_the_fault_after_k_requests(
    sim: SimulatorServer, client: openai.OpenAI
) -> None:
    view = sim.control.set_faults(status=500, times=2)
    assert view["times"] == 2

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            _chat(client)
    assert _chat(client) is not None
    assert sim.control.faults() == {"faults": _defaults(), "times": None}


def test_times_counts_every_api_request(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.control.set_faults(status=502, times=1)

    with pytest.raises(openai.APIStatusError):
        client.models.list()
    assert [model.id for model in client.models.list()]


def test_a_new_fault_set_replaces_the_previous_one(sim: SimulatorServer) -> None:
    sim.control.set_faults(status=500, delay_ms=5)
    view = sim.control.set_faults(no_usage=True)

    assert view["faults"]["status"] is None
    assert view["faults"]["delay_ms"] == 0
    assert view["faults"]["no_usage"] is True


def test_invalid_faults_are_rejected(sim: SimulatorServer, http: httpx.Client) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        sim.control.set_faults(stauts=500)
    with pytest.raises(httpx.HTTPStatusError):
        sim.control.set_faults(status=200)
    bad_header = http.post(
        CHAT, json={"model": "m", "messages": USER}, headers={"x-sim-delay-ms": "soon"}
    )
    assert bad_header.status_code == 400
    assert "x-sim" in bad_header.json()["error"]["message"]


# Timing


def test_delay_ms_holds_the_headers(client: openai.OpenAI) -> None:
    started = time.monotonic()
    _chat(client, **{"x-sim-delay-ms": "150"})

    assert time.monotonic() - started >= 0.15


def test_chunk_delay_ms_paces_the_stream(http: httpx.Client) -> None:
    started = time.monotonic()
    body = http.post(
        CHAT,
        json={"model": "m", "messages": USER, "stream": True},
        headers={"x-sim-chunk-delay-ms": "40", "x-sim-chunks": "3"},
    ).text

    assert len(chunks(body)) == 5  # role, 3 words, finish; then [DONE]: 5 gaps in all
    assert time.monotonic() - started >= 0.2


# Cuts and malformed output


def test_cut_stream_breaks_the_sdk_stream(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.control.set_faults(cut_after=3)
    stream = client.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    received: list[object] = []
    with pytest.raises(openai.APIConnectionError):
        received.extend(stream)

    assert len(received) <= 3
    assert sim.control.stats()["usage"]["responses"] == 0


def test_cut_stream_has_no_done_on_the_wire(http: httpx.Client) -> None:
    lines: list[str] = []
    with (
        http.stream("POST", CHAT, json=STREAM_WITH_USAGE, headers={"x-sim-cut-after": "4"}) as rsp,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        lines.extend(rsp.iter_lines())

    payloads = [line for line in lines if line.startswith("data: ")]
    assert len(payloads) == 4
    assert "data: [DONE]" not in payloads


def test_cut_non_streaming_body(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        _chat(client, **{"x-sim-cut-after": "20"})


def test_malformed_json_with_200(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.post(
        CHAT, json={"model": "m", "messages": USER}, headers={"x-sim-malformed-json": "1"}
    )

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    with pytest.raises(json.JSONDecodeError):
        _chat(client, **{"x-sim-malformed-json": "true"})


def test_malformed_sse_emits_one_garbage_line(http: httpx.Client) -> None:
    body = http.post(CHAT, json=STREAM_WITH_USAGE, headers={"x-sim-malformed-sse": "1"}).text
    payloads = data_lines(body)

    broken = []
    for payload in payloads[:-1]:
        try:
            json.loads(payload)
        except json.JSONDecodeError:
            broken.append(payload)
    assert len(broken) == 1
    assert payloads.index(broken[0]) == 2  # after the role chunk and the first word
    assert payloads[-1] == "[DONE]"


# Usage shaping


def test_no_usage_everywhere(http: httpx.Client, client: openai.OpenAI) -> None:
    hidden = {"x-sim-no-usage": "1"}
    plain = http.post(CHAT, json={"model": "m", "messages": USER}, headers=hidden).json()
    streamed = chunks(http.post(CHAT, json=STREAM_WITH_USAGE, headers=hidden).text)
    embedded = http.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=hidden).json()
    response = client.responses.create(model="m", input="a", extra_headers=hidden)

    assert "usage" not in plain
    assert all("usage" not in chunk for chunk in streamed)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in streamed) == TEXT16
    assert "usage" not in embedded
    assert response.usage is None


def test_usage_every_chunk_is_cumulative(http: httpx.Client) -> None:
    request = {"model": "m", "messages": USER, "stream": True, "n": 2}
    parsed = chunks(http.post(CHAT, json=request, headers={"x-sim-usage-every-chunk": "1"}).text)

    completions = [chunk["usage"]["completion_tokens"] for chunk in parsed]
    assert completions == sorted(completions)
    assert completions[0] == 0
    assert completions[-1] == 32
    assert {chunk["usage"]["prompt_tokens"] for chunk in parsed} == {9}


def test_usage_twice_sends_two_identical_usage_chunks(
    sim: SimulatorServer, http: httpx.Client
) -> None:
    parsed = chunks(
        http.post(CHAT, json=STREAM_WITH_USAGE, headers={"x-sim-usage-twice": "1"}).text
    )

    usage_chunks = [chunk for chunk in parsed if chunk["usage"] is not None]
    assert len(usage_chunks) == 2
    assert usage_chunks[0] == usage_chunks[1]
    assert sim.control.stats()["usage"]["responses"] == 1  # one response, counted once


def test_reject_stream_options(sim: SimulatorServer, client: openai.OpenAI) -> None:
    sim.control.set_faults(reject_stream_options=True)

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    assert caught.value.message.endswith("Unknown parameter: 'stream_options'.")
    assert caught.value.param == "stream_options"
    streamed = client.chat.completions.create(model="m", messages=USER, stream=True)
    assert all(chunk.usage is None for chunk in streamed)


def test_token_knobs_cached_reasoning_and_chunks(
    sim: SimulatorServer, client: openai.OpenAI
) -> None:
    sim.control.set_faults(cached_tokens=4, reasoning_tokens=3, completion_tokens=10)
    completion = client.chat.completions.create(model="o1", messages=USER)

    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 10, 19)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert completion.choices[0].message.content == " ".join(f"w{i}" for i in range(7))

    # Headers lay over the server-wide faults: `chunks` replaces the 10, reasoning stays 3.
    clamped = client.chat.completions.create(
        model="o1",
        messages=USER,
        extra_headers={"x-sim-cached-tokens": "100", "x-sim-chunks": "4"},
    )
    assert clamped.usage is not None
    assert clamped.usage.prompt_tokens_details is not None
    assert clamped.usage.prompt_tokens_details.cached_tokens == 9  # clamped to the prompt
    assert clamped.usage.completion_tokens == 4
    assert clamped.choices[0].message.content == "w0"


# Never-ending streams


def test_never_end_keeps_streaming_until_the_client_leaves(
    sim: SimulatorServer, http: httpx.Client
) -> None:
    headers = {"x-sim-never-end": "1", "x-sim-chunk-delay-ms": "5"}
    seen = 0
    with http.stream("POST", CHAT, json=STREAM_WITH_USAGE, headers=headers) as response:
        for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen == 40:  # well past the 16 words of a normal answer
                break

    assert seen == 40
    assert sim.control.stats()["usage"]["responses"] == 0


@pytest.fixture(scope="module")
def short_lived() -> Iterator[SimulatorServer]:
    """A simulator whose endless streams stop after 0.3 s and whose answers are 3 words."""
    config = SimulatorConfig(max_stream_seconds=0.3, faults=Faults(completion_tokens=3))
    with SimulatorServer(config) as server:
        yield server


def test_never_end_is_bounded_and_config_faults_are_defaults(short_lived: SimulatorServer) -> None:
    with openai.OpenAI(base_url=short_lived.base_url, api_key="x", max_retries=0) as sdk:
        completion = sdk.chat.completions.create(model="m", messages=USER)
        started = time.monotonic()
        streamed = list(
            sdk.chat.completions.create(
                model="m", messages=USER, stream=True, extra_headers={"x-sim-never-end": "1"}
            )
        )

    assert completion.choices[0].message.content == "w0 w1 w2"
    assert time.monotonic() - started < 3
    assert len(streamed) >= 2
    assert all(chunk.choices[0].finish_reason is None for chunk in streamed)


def _defaults() -> dict[str, object]:
    return {
        "status": None,
        "retry_after": None,
        "delay_ms": 0,
        "chunk_delay_ms": 0,
        "cut_after": None,
        "no_usage": False,
        "usage_every_chunk": False,
        "reject_stream_options": False,
        "malformed_json": False,
        "malformed_sse": False,
        "never_end": False,
        "usage_twice": False,
        "completion_tokens": 16,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "chunks": None,
    }
