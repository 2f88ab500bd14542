"""TokenCounter: special-token text, completions, legacy prompts, Responses input, async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from proxy.tokens import TokenCounter


def test_endoftext_is_counted_as_ordinary_text(counter: TokenCounter) -> None:
    for model in ("gpt-4", "gpt-4o", "gpt-oss-20b"):
        # "<|endoftext|>" is several ordinary tokens, never the single special token or an error.
        assert counter.count_text("<|endoftext|>", model) > 1
        assert counter.count_text("a <|endoftext|> b <|fim_prefix|>", model) > 5
    assert counter.count_chat_prompt([{"role": "user", "content": "<|endoftext|>"}], "gpt-4o") > 7


def test_count_text_basics(counter: TokenCounter) -> None:
    assert counter.count_text("", "gpt-4o") == 0
    assert counter.count_text("hello world", "gpt-4o") == 2
    assert counter.count_text("hello world", "gpt-4") == 2
    # Lone surrogates (valid JSON "\ud800") are replaced, not an error.
    assert counter.count_text("bad \ud800 surrogate", "gpt-4o") > 0


def test_completion_counts_concatenated_text_not_delta_sums(counter: TokenCounter) -> None:
    deltas = ["Hel", "lo", " wor", "ld", "!"]
    per_delta = sum(counter.count_text(d, "gpt-4o") for d in deltas)
    concatenated = counter.count_completion(["".join(deltas)], "gpt-4o")

    assert concatenated == counter.count_text("Hello world!", "gpt-4o") == 3
    assert per_delta > concatenated


def test_completion_sums_over_choices(counter: TokenCounter) -> None:
    choices = ["Hello world!", "Goodbye, moon.", ""]
    assert counter.count_completion(choices, "gpt-4o") == sum(
        counter.count_text(text, "gpt-4o") for text in choices
    )
    assert counter.count_completion([], "gpt-4o") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello world", 2),
        (["hello world", "hello"], 3),
        ([15339, 1917, 0], 3),  # a token array counts its length
        ([[15339, 1917], [1, 2, 3, 4]], 6),  # a list of token arrays
        ([], 0),
        ([[]], 0),
        (None, 0),
        ({"not": "valid"}, 0),
        ([True, None, 1.5], 0),
    ],
)
def test_prompt_input_shapes(counter: TokenCounter, value: object, expected: int) -> None:
    assert counter.count_prompt_input(value, "text-embedding-3-small") == expected


def test_responses_input_string_equals_one_user_message(counter: TokenCounter) -> None:
    as_chat = counter.count_chat_prompt(
        [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        "gpt-4o",
    )
    body = {"model": "gpt-4o", "instructions": "Be brief.", "input": "Hi there"}
    assert counter.count_responses_input(body, "gpt-4o") == as_chat


def test_responses_input_items_and_tools(counter: TokenCounter) -> None:
    def t(s: str) -> int:
        return counter.count_text(s, "gpt-4o")

    body: dict[str, Any] = {
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]},
        ],
        "tools": [
            {"type": "web_search"},
            {
                "type": "function",
                "name": "f",
                "description": "Does f.",
                "parameters": {"type": "object", "properties": {}},
            },
        ],
    }
    expected = (
        (3 + t("user") + t("Hi"))
        + (3 + t("assistant") + t("Hello"))
        + (3 + t("f") + t("{}"))
        + (3 + t("c1") + t("42"))
        + 3
        + (3 + t("user") + 765)
        + 3  # reply priming
        + (7 + t("f:Does f") + 12)  # one function tool; web_search counts 0
    )
    assert counter.count_responses_input(body, "gpt-4o") == expected
    assert counter.count_responses_input({}, "gpt-4o") == 3


ToThread = Callable[..., Any]


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the thread each ``asyncio.to_thread`` call ran its function in."""
    calls: list[int] = []
    real: ToThread = asyncio.to_thread

    async def spy(fn: Callable[[], Any], /) -> Any:
        def wrapped() -> Any:
            calls.append(threading.get_ident())
            return fn()

        return await real(wrapped)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    return calls


async def test_async_counts_small_payloads_inline_and_large_ones_in_a_thread(
    thread_calls: list[int],
) -> None:
    counter = TokenCounter(thread_threshold=1000)
    counter.preload(["o200k_base"])

    assert await counter.acount_text("hello world", "gpt-4o") == 2
    assert thread_calls == []

    big = "hello world " * 500
    assert await counter.acount_text(big, "gpt-4o") == counter.count_text(big, "gpt-4o")
    assert await counter.acount_completion([big], "gpt-4o") == counter.count_text(big, "gpt-4o")
    messages = [{"role": "user", "content": big}]
    assert await counter.acount_chat_prompt(messages, "gpt-4o") == counter.count_chat_prompt(
        messages, "gpt-4o"
    )
    assert await counter.acount_prompt_input([big], "gpt-4o") == counter.count_text(big, "gpt-4o")
    body = {"input": big}
    assert await counter.acount_responses_input(body, "gpt-4o") == counter.count_responses_input(
        body, "gpt-4o"
    )
    assert len(thread_calls) == 5
    assert threading.get_ident() not in thread_calls


async def test_first_use_loads_the_encoding_off_the_event_loop(thread_calls: list[int]) -> None:
    counter = TokenCounter()
    assert await counter.acount_text("hi", "gpt-4") == 1
    assert len(thread_calls) == 1
    assert await counter.acount_text("hi", "gpt-4") == 1
    assert len(thread_calls) == 1  # loaded now: small payloads stay inline


async def test_concurrent_first_uses_all_succeed() -> None:
    counter = TokenCounter(thread_threshold=0)
    counts = await asyncio.gather(*(counter.acount_text("hello", "gpt-4o") for _ in range(8)))
    assert counts == [1] * 8
    assert counter.encoding("o200k_base") is counter.encoding_for("gpt-4o")
