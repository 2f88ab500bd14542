"""The OpenAI endpoints the gateway serves, and how each one's tokens are estimated.

Upstream usage always wins; these rules only run when an upstream reported none (see
reference/openai-usage.md section 3 for the formulas and their limits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.tokens import TokenCounter
from proxy.tokens.chat import message_output_texts
from proxy.tokens.responses import output_texts

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "RESPONSES", "SURFACES", "Surface"]

#: Counts a request body's prompt tokens (synchronously: the caller decides where it runs).
PromptCounter = Callable[[TokenCounter, dict[str, Any], str], int]


@dataclass(frozen=True, slots=True)
class Surface:
    """One proxied endpoint: its path, streaming behaviour and fallback counting."""

    #: Path under the upstream's base URL (and under ``/v1`` here).
    endpoint: str
    #: Whether ``stream: true`` is meaningful (embeddings have no stream).
    streams: bool
    #: Whether ``stream_options.include_usage`` exists (Responses always send usage).
    injects_usage: bool
    prompt: PromptCounter
    texts: Callable[[Any], list[str]]
    #: Whether a request pulls in server-side input the gateway never sees (its prompt
    #: estimate is then a lower bound).
    hidden_input: Callable[[Any], bool] = lambda _body: False
    #: Whether its streams are typed events (``event:`` + a ``type``, Responses) rather than
    #: chunks ending with ``[DONE]``.
    typed_events: bool = False


def _chat_prompt(counter: TokenCounter, body: dict[str, Any], model: str) -> int:
    messages = body.get("messages")
    return counter.count_chat_prompt(
        messages if isinstance(messages, list) else [],
        model,
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
    )


def _completion_prompt(counter: TokenCounter, body: dict[str, Any], model: str) -> int:
    return counter.count_prompt_input(body.get("prompt", ""), model)


def _embedding_prompt(counter: TokenCounter, body: dict[str, Any], model: str) -> int:
    return counter.count_prompt_input(body.get("input", ""), model)


def _responses_prompt(counter: TokenCounter, body: dict[str, Any], model: str) -> int:
    return counter.count_responses_input(body, model)


def _choices(document: Any) -> list[Any]:
    choices = document.get("choices") if isinstance(document, dict) else None
    return choices if isinstance(choices, list) else []


def _chat_texts(document: Any) -> list[str]:
    # Each choice's content, refusal and tool calls (function name and arguments).
    texts = []
    for choice in _choices(document):
        if isinstance(choice, dict):
            texts += message_output_texts(choice.get("message"))
    return texts


def _completion_texts(document: Any) -> list[str]:
    return [
        choice["text"]
        for choice in _choices(document)
        if isinstance(choice, dict) and isinstance(choice.get("text"), str)
    ]


def _no_texts(document: Any) -> list[str]:
    return []


def _responses_texts(document: Any) -> list[str]:
    return output_texts(document.get("output") if isinstance(document, dict) else None)


def _responses_history(body: Any) -> bool:
    # Stored responses and conversations are added to input_tokens upstream.
    return isinstance(body, dict) and bool(
        body.get("previous_response_id") or body.get("conversation")
    )


CHAT = Surface("chat/completions", True, True, _chat_prompt, _chat_texts)
COMPLETIONS = Surface("completions", True, True, _completion_prompt, _completion_texts)
EMBEDDINGS = Surface("embeddings", False, False, _embedding_prompt, _no_texts)
RESPONSES = Surface(
    "responses",
    True,
    False,
    _responses_prompt,
    _responses_texts,
    _responses_history,
    typed_events=True,
)

#: Every proxied endpoint, each served at ``/v1/<endpoint>`` (the one list of them).
SURFACES = (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES)
