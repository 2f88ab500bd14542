"""The chat prompt formula: the cookbook's API-verified numbers, and real-traffic shapes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.tokens import TokenCounter

# openai/openai-cookbook examples/How_to_count_tokens_with_tiktoken.ipynb (commit c81359cd).
COOKBOOK_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

WEATHER_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]

WEATHER_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
        ("gpt-4o-2024-08-06", 124),
        ("gpt-4o-mini-2024-07-18", 124),
        ("gpt-4", 129),
        ("gpt-4-0613", 129),
        ("gpt-3.5-turbo", 129),
        ("gpt-3.5-turbo-0125", 129),
        ("gpt-3.5-turbo-0301", 127),  # the legacy rule, API-verified in the older notebook
    ],
)
def test_cookbook_messages(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_chat_prompt(COOKBOOK_MESSAGES, model) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4o", 101), ("gpt-4o-mini", 101), ("gpt-4", 105), ("gpt-3.5-turbo", 105)],
)
def test_cookbook_weather_tool(counter: TokenCounter, model: str, expected: int) -> None:
    assert counter.count_chat_prompt(WEATHER_MESSAGES, model, tools=WEATHER_TOOLS) == expected


def test_formula_parts(counter: TokenCounter) -> None:
    text = counter.count_text
    # 3 per message + role + content, +1 and the name's tokens for "name", +3 reply priming.
    assert counter.count_chat_prompt([{"role": "user", "content": "hello world"}], "gpt-4o") == (
        3 + 1 + 2 + 3
    )
    named = [{"role": "user", "name": "bob", "content": "hi"}]
    assert counter.count_chat_prompt(named, "gpt-4o") == (
        3 + 1 + text("bob", "gpt-4o") + 1 + text("hi", "gpt-4o") + 3
    )
    assert counter.count_chat_prompt([], "gpt-4o") == 3


def test_null_content_tool_calls_and_tool_results(counter: TokenCounter) -> None:
    def t(s: str) -> int:
        return counter.count_text(s, "gpt-4o")

    messages: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": '{"location":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "12 degrees"},
    ]
    expected = (
        (3 + t("assistant") + t("get_current_weather") + t('{"location":"Oslo"}'))
        + (3 + t("tool") + t("call_abc") + t("12 degrees"))
        + 3
    )
    assert counter.count_chat_prompt(messages, "gpt-4o") == expected


def test_content_parts_count_text_and_images(counter: TokenCounter) -> None:
    parts = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]
    as_string = counter.count_chat_prompt(
        [{"role": "user", "content": "What is in this image?"}], "gpt-4o"
    )
    # low: 85; auto on an unmeasurable URL: assumed 1024x1024 at high detail = 765; audio: 0.
    assert counter.count_chat_prompt([{"role": "user", "content": parts}], "gpt-4o") == (
        as_string + 85 + 765
    )


def test_garbage_never_raises(counter: TokenCounter) -> None:
    messages: list[Any] = [
        None,
        "just a string",
        {"role": "user", "content": [None, 3, {"type": "text"}, "bare"]},
        {"role": "assistant", "tool_calls": "oops", "function_call": {"arguments": 5}},
        {"role": 7, "content": {"unexpected": "object"}},
    ]
    tools: list[Any] = [
        None,
        {"type": "function"},
        {"type": "function", "function": "nope"},
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": 1}}}},
        {"type": "web_search"},
    ]
    assert counter.count_chat_prompt(messages, "gpt-4o", tools=tools, tool_choice=[1]) > 0


def test_tool_choice_heuristic(counter: TokenCounter) -> None:
    base = counter.count_chat_prompt(WEATHER_MESSAGES, "gpt-4o", tools=WEATHER_TOOLS)

    def with_choice(choice: object) -> int:
        return counter.count_chat_prompt(
            WEATHER_MESSAGES, "gpt-4o", tools=WEATHER_TOOLS, tool_choice=choice
        )

    assert with_choice("auto") == base
    assert with_choice("none") == base + 1
    named = {"type": "function", "function": {"name": "get_current_weather"}}
    assert with_choice(named) == base + 7 + counter.count_text("get_current_weather", "gpt-4o")


def test_flat_function_definitions_count_like_chat_tools(counter: TokenCounter) -> None:
    flat = [WEATHER_TOOLS[0]["function"]]
    assert counter.count_chat_prompt(WEATHER_MESSAGES, "gpt-4o", tools=flat) == 101


def test_nested_properties_are_not_free(counter: TokenCounter) -> None:
    flat = counter.count_chat_prompt(WEATHER_MESSAGES, "gpt-4o", tools=WEATHER_TOOLS)
    nested_tool = {
        "type": "function",
        "function": {
            **WEATHER_TOOLS[0]["function"],
            "parameters": {
                "type": "object",
                "properties": {
                    **WEATHER_TOOLS[0]["function"]["parameters"]["properties"],
                    "options": {
                        "type": "object",
                        "description": "Extra options",
                        "properties": {"days": {"type": "integer", "description": "Forecast"}},
                    },
                },
            },
        },
    }
    assert counter.count_chat_prompt(WEATHER_MESSAGES, "gpt-4o", tools=[nested_tool]) > flat + 10
