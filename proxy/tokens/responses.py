"""Best-effort input tokens of a Responses API request (``POST /v1/responses``).

The Responses API renders into the same chat format as chat completions, so the chat formula is
reused (reference/openai-usage.md section 1.4):

- ``instructions`` count as a leading ``developer`` message;
- a string ``input`` is one ``user`` message; a list holds items:
  - messages (``{"role", "content"}``, with or without ``"type": "message"``): as chat messages,
    content parts ``input_text`` / ``output_text`` / ``input_image`` understood;
  - ``function_call``: a message with the function's name and arguments;
  - ``function_call_output`` (and other ``*_call_output`` items): a message with the output text
    and the call id (the chat formula's treatment of ``tool_call_id``);
  - ``reasoning``, ``item_reference`` and hosted-tool items: per-message overhead only; their real
    cost is server-side and unknown;
  (:func:`output_texts` reads the generated side of an answer's ``output`` the same way);
- ``tools`` by the cookbook's tool rule (function tools only); ``tool_choice`` by LiteLLM's rule.

``previous_response_id`` and ``conversation`` add server-side history the proxy never sees, so
the result is a lower bound for such requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.tokens.chat import (
    ChatRules,
    TextCounter,
    content_tokens,
    function_call_texts,
    messages_tokens,
    tool_choice_tokens,
    tools_tokens,
)

__all__ = ["output_texts", "responses_input_tokens"]


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _item_tokens(item: object, count: TextCounter, rules: ChatRules) -> int:
    if isinstance(item, str):  # lenient: a bare string in the list is user text
        return rules.per_message + count("user") + count(item)
    if not isinstance(item, Mapping):
        return 0
    kind = item.get("type", "message")
    if kind == "message" or "role" in item:
        return (
            rules.per_message
            + count(_str(item.get("role")))
            + content_tokens(item.get("content"), count, rules)
        )
    if kind == "function_call":
        return rules.per_message + sum(count(text) for text in function_call_texts(item))
    if isinstance(kind, str) and kind.endswith("_call_output"):
        output = item.get("output")
        return (
            rules.per_message
            + count(_str(item.get("call_id")))
            + content_tokens(output, count, rules)
        )
    return rules.per_message


def responses_input_tokens(body: Mapping[str, Any], count: TextCounter, rules: ChatRules) -> int:
    """Estimated ``input_tokens`` of a Responses request ``body`` (see the module docstring)."""
    total = 0
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        total += rules.per_message + count("developer") + count(instructions)
    raw_input = body.get("input")
    items: list[Any]
    if isinstance(raw_input, str):
        items = [{"role": "user", "content": raw_input}]
    elif isinstance(raw_input, list):
        items = raw_input
    else:
        items = []
    total += sum(_item_tokens(item, count, rules) for item in items)
    # The reply priming, shared with chat: an empty message list is just the priming.
    total += messages_tokens([], count, rules)
    total += tools_tokens(body.get("tools"), count, rules)
    total += tool_choice_tokens(body.get("tool_choice"), count)
    return total


def output_texts(output: object) -> list[str]:
    """What a model generated in a Responses ``output`` list, for the completion estimate:
    the text (and refusals) of its messages as one string, then each ``function_call``
    item's name and arguments. Reasoning and hosted-tool items show no countable text."""
    parts: list[str] = []
    calls: list[str] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "function_call":
            calls += function_call_texts(item)
            continue
        content = item.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, Mapping):
                parts += [_str(part.get("text")), _str(part.get("refusal"))]
    texts = ["".join(parts), *calls]
    return [text for text in texts if text]
