"""A stream the upstream cuts, as the official ``openai`` SDK sees it through the gateway.

OpenAI ends a stream that fails midway with an error event, which the SDK raises as
``openai.APIError``; the gateway ends a cut stream the same way on chat completions and on the
Responses API, so a client can tell a truncated answer from a complete one. What was generated
is metered, flagged estimated.
"""

from __future__ import annotations

import openai
import pytest

from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import MODEL, stored_events, usage_by_request

QUESTION = [{"role": "user", "content": "hello hello hello"}]


def read_sync(client: openai.OpenAI, surface: str, texts: list[str]) -> None:
    """Read a whole stream with the sync SDK, keeping the streamed text."""
    if surface == "chat":
        for chunk in client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True):
            texts.extend(choice.delta.content or "" for choice in chunk.choices)
    else:
        for event in client.responses.create(model=MODEL, input="hello", stream=True):
            if event.type == "response.output_text.delta":
                texts.append(event.delta)


async def read_async(client: openai.AsyncOpenAI, surface: str, texts: list[str]) -> None:
    """Read a whole stream with the async SDK, keeping the streamed text."""
    if surface == "chat":
        chunks = await client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True)
        async for chunk in chunks:
            texts.extend(choice.delta.content or "" for choice in chunk.choices)
    else:
        events = await client.responses.create(model=MODEL, input="hello", stream=True)
        async for event in events:
            if event.type == "response.output_text.delta":
                texts.append(event.delta)


def read_with_helper(client: openai.OpenAI) -> None:
    """``client.responses.stream()``: the SDK's helper that accumulates a final response."""
    with client.responses.stream(model=MODEL, input="hello") as stream:
        for _ in stream:
            pass


def check_raised(error: openai.APIError) -> None:
    # The error event itself, not a broken connection (APIConnectionError is an APIError too).
    assert type(error) is openai.APIError
    assert error.code == "upstream_stream_interrupted"
    assert error.type == "upstream_error"
    assert "The upstream 'sim' broke off in the middle of the stream" in error.message


def check_metered(gateway: LocalGateway, text: str) -> None:
    events = stored_events(gateway.db)
    assert {e["usage_source"] for e in events} == {"estimated"}
    (usage,) = usage_by_request(events).values()
    assert usage["output"] == TokenCounter().count_completion([text], MODEL)
    assert usage["input"] > 0


@pytest.fixture
def gateway(make_gateway: GatewayFactory, simulator: SimulatorServer) -> LocalGateway:
    # Cut after 6 events: the opening events, then a few words.
    simulator.control.set_faults(cut_after=6)
    return make_gateway()


@pytest.mark.parametrize("surface", ["chat", "responses"])
def test_sync_sdk_raises_api_error_on_a_cut_stream(gateway: LocalGateway, surface: str) -> None:
    texts: list[str] = []
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.new_key(), max_retries=0)
    with pytest.raises(openai.APIError) as raised:
        read_sync(client, surface, texts)
    client.close()
    check_raised(raised.value)
    assert "".join(texts)  # some words came before the cut
    check_metered(gateway, "".join(texts))


@pytest.mark.parametrize("surface", ["chat", "responses"])
async def test_async_sdk_raises_api_error_on_a_cut_stream(
    gateway: LocalGateway, surface: str
) -> None:
    texts: list[str] = []
    client = openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=gateway.new_key(), max_retries=0
    )
    with pytest.raises(openai.APIError) as raised:
        await read_async(client, surface, texts)
    await client.close()
    check_raised(raised.value)
    assert "".join(texts)
    check_metered(gateway, "".join(texts))


def test_the_responses_stream_helper_raises_too(gateway: LocalGateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.new_key(), max_retries=0)
    with pytest.raises(openai.APIError) as raised:
        read_with_helper(client)
    client.close()
    check_raised(raised.value)
