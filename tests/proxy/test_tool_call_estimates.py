"""An answer that calls tools, from an upstream that reports no usage: its function names and
arguments are completion tokens of the estimate, streamed (arguments in pieces across chunks)
or not, on chat completions and on the Responses API.

The upstream is an ``httpx.MockTransport`` at the app's transport seam, answering in OpenAI's
shapes without any ``usage``; the client is the official SDK through the real gateway on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from config import load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.sse import SSEReader
from proxy.tokens import TokenCounter
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import stored_events

MODEL = "gpt-4o"
NAME = "get_weather"
ARGUMENTS = '{"location": "Paris, France", "unit": "celsius", "days": 3}'
# Cut where a real stream cuts: inside words and inside JSON tokens.
PIECES = ['{"loc', 'ation": "Par', "is, France", '", "unit": "cel', 'sius", "days": 3}']
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def sse(payload: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + msgspec.json.encode(payload) + b"\n\n"


def chat_answer() -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": NAME, "arguments": ARGUMENTS}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
    }


def chat_stream() -> Iterator[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": MODEL}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**base, "choices": [choice]})

    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": NAME}}
    yield chunk({"role": "assistant", "content": None, "tool_calls": [first]})
    for piece in PIECES:
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls")
    yield b"data: [DONE]\n\n"


def function_item(arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": NAME,
        "arguments": arguments,
        "status": status,
    }


def response_object(status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": MODEL,
        "status": status,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def responses_stream() -> Iterator[bytes]:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response_object("in_progress", [])},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": function_item("", "in_progress"),
        },
        *(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": "fc_1",
                "output_index": 0,
                "delta": piece,
            }
            for piece in PIECES
        ),
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": function_item(ARGUMENTS, "completed"),
        },
        {
            "type": "response.completed",
            "response": response_object("completed", [function_item(ARGUMENTS, "completed")]),
        },
    ]
    for number, event in enumerate(events):
        yield sse({**event, "sequence_number": number}, event["type"])


class Streamed(httpx.AsyncByteStream):
    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def upstream(request: httpx.Request) -> httpx.Response:
    body = msgspec.json.decode(request.content)
    responses = request.url.path.endswith("/responses")
    if body.get("stream"):
        stream = responses_stream() if responses else chat_stream()
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, stream=Streamed(stream), headers=headers)
    answer = response_object("completed", [function_item(ARGUMENTS, "completed")])
    return httpx.Response(200, json=answer if responses else chat_answer())


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = demo_settings(
        load_settings(env={}), upstream_url="http://up.test/v1", db=tmp_path / "t.db", port=0
    )
    app = create_app(settings, transport=httpx.MockTransport(upstream))
    with BackgroundServer(app, lifespan="on", name="gateway") as server:
        running = Gateway(server, settings)
        yield running
        running.close_clients()


def metered(gateway: Gateway, customer: str) -> dict[str, Any]:
    events = [e for e in stored_events(gateway) if e.external_subscription_id.startswith(customer)]
    assert {e.properties["usage_source"] for e in events} == {"estimated"}
    return {e.properties["type"]: e.properties["tokens"] for e in events}


def call_tokens() -> int:
    """The fallback's rule: the function's name and its whole arguments, each counted."""
    tokens = TokenCounter().count_completion([NAME, ARGUMENTS], MODEL)
    assert tokens > 10
    return tokens


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_calls_are_estimated_completion_tokens(gateway: Gateway, stream: bool) -> None:
    client = gateway.client(gateway.new_key(f"chat-{stream}"))
    if stream:
        chunks = list(client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))
        pieces = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
        streamed = "".join(calls[0].function.arguments or "" for calls in pieces)
        assert streamed == ARGUMENTS  # the client got every piece, unchanged
    else:
        answer = client.chat.completions.create(model=MODEL, messages=QUESTION)
        assert answer.choices[0].message.tool_calls
    tokens = metered(gateway, f"chat-{stream}")
    assert tokens["output"] == call_tokens()
    assert tokens["input"] == TokenCounter().count_chat_prompt(QUESTION, MODEL)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_calls_are_estimated_completion_tokens(
    gateway: Gateway, stream: bool
) -> None:
    client = gateway.client(gateway.new_key(f"responses-{stream}"))
    if stream:
        kinds = [
            event.type
            for event in client.responses.create(
                model=MODEL, input="What is the weather in Paris?", stream=True
            )
        ]
        assert kinds.count("response.function_call_arguments.delta") == len(PIECES)
        assert kinds[-1] == "response.completed"
    else:
        answer = client.responses.create(model=MODEL, input="What is the weather in Paris?")
        assert answer.output[0].type == "function_call"
    tokens = metered(gateway, f"responses-{stream}")
    assert tokens["output"] == call_tokens()


def test_a_stream_cut_inside_the_arguments_counts_the_pieces_that_came() -> None:
    # The reader alone (sans I/O): what it keeps when the stream stops after two pieces.
    reader = SSEReader(strip_usage=True)
    for number, piece in enumerate(chat_stream()):
        if number == 3:
            break
        reader.feed(piece)
    assert reader.texts() == [NAME, "".join(PIECES[:2])]
