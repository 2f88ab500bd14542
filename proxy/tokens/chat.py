"""The cookbook's chat prompt formula (reference/openai-usage.md section 3.2), made total.

    prompt = 3 (reply priming) + Σ_messages (per_message + Σ_fields tokens(field) [+ per_name])
           + tools (the cookbook's empirical rule) + tool_choice (LiteLLM's heuristic)

With ``o200k_base`` (gpt-4o, gpt-4o-mini) and ``cl100k_base`` (gpt-4, gpt-3.5-turbo-0125) this
reproduces the API-reported numbers in the cookbook exactly: 124 / 129 for the six-message example
and 101 / 105 for the weather-tool example. Everything beyond those examples is an estimate.

The cookbook's function crashes on real traffic (``content: null``, content-part lists,
``tool_calls``); this version counts, per message field:

- a string: its tokens (``role``, ``content``, ``name`` (+``per_name``), ``tool_call_id``, …);
- a content-part list: ``text`` / ``refusal`` parts as text, ``image_url`` parts by
  ``proxy.tokens.images``; audio and file parts cannot be estimated and count 0;
- ``tool_calls`` / ``function_call``: each function's name and arguments (ids are not sent to
  the model as text); the same texts make the completion estimate of an answer that calls
  tools (:func:`message_output_texts`);
- anything else (``null``, numbers, unknown objects): 0. Client input never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.tokens.images import image_size, image_tokens

__all__ = [
    "ChatRules",
    "TextCounter",
    "chat_rules",
    "content_tokens",
    "function_call_texts",
    "message_output_texts",
    "message_tokens",
    "messages_tokens",
    "tool_choice_tokens",
    "tools_tokens",
]

#: Counts the tokens of one string with the model's encoding.
TextCounter = Callable[[str], int]

_REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# The cookbook's tool-rule constants (API-verified on its one example).
_PROP_INIT = 3
_PROP_KEY = 3
_ENUM_INIT = -3
_ENUM_ITEM = 3
_FUNC_END = 12


@dataclass(frozen=True, slots=True)
class ChatRules:
    """Per-model constants of the formula; ``model`` is the normalised id (for image costs)."""

    model: str
    per_message: int = 3
    per_name: int = 1
    func_init: int = 7


def chat_rules(model: str, encoding: str) -> ChatRules:
    """The constants for a normalised ``model`` counted with ``encoding``.

    gpt-3.5-turbo-0301 is the API-verified legacy case (4 per message, -1 per name: "if there's a
    name, the role is omitted"). Tool functions start with 7 tokens on o200k models and 10 on
    cl100k models. New families (gpt-4.1, o-series, gpt-5) are assumed to follow gpt-4o.
    """
    func_init = 10 if encoding == "cl100k_base" else 7
    if model.startswith(("gpt-3.5-turbo-0301", "gpt-35-turbo-0301")):
        return ChatRules(model=model, per_message=4, per_name=-1, func_init=func_init)
    return ChatRules(model=model, func_init=func_init)


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _image_part_tokens(image: object, rules: ChatRules) -> int:
    # Chat sends {"image_url": {"url", "detail"}}; the Responses API a bare "image_url" string.
    if isinstance(image, Mapping):
        url, detail = _str(image.get("url")), image.get("detail")
    else:
        url, detail = _str(image), None
    return image_tokens(image_size(url), detail if isinstance(detail, str) else None, rules.model)


def content_tokens(content: object, count: TextCounter, rules: ChatRules) -> int:
    """Tokens of a message ``content``: a string, ``null`` or a list of content parts.

    Part types of both chat (``text``, ``image_url``, ``refusal``) and Responses (``input_text``,
    ``output_text``, ``input_image``) are understood; others count 0.
    """
    if isinstance(content, str):
        return count(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += count(part)
        elif not isinstance(part, Mapping):
            continue
        elif part.get("type") in ("image_url", "input_image"):
            total += _image_part_tokens(part.get("image_url"), rules)
        else:
            total += count(_str(part.get("text"))) + count(_str(part.get("refusal")))
    return total


def function_call_texts(call: object) -> list[str]:
    """The name and arguments of a function call, as the model wrote them; [] for non-calls.

    Chat's ``tool_calls`` entries nest them (``{"function": {"name", "arguments"}}``); the
    legacy ``function_call`` and the Responses API's ``function_call`` items are flat. Ids are
    not model text and are left out.
    """
    if not isinstance(call, Mapping):
        return []
    function = call.get("function", call)
    if not isinstance(function, Mapping):
        return []
    return [_str(function.get("name")), _str(function.get("arguments"))]


def _function_call_tokens(call: object, count: TextCounter) -> int:
    return sum(count(text) for text in function_call_texts(call))


def message_output_texts(message: object) -> list[str]:
    """What a model generated in a chat ``message`` (a non-streamed choice's), for the
    completion estimate: its ``content``, its ``refusal``, then each tool call's (and a
    legacy ``function_call``'s) name and arguments."""
    if not isinstance(message, Mapping):
        return []
    texts = [_str(message.get("content")), _str(message.get("refusal"))]
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        texts += function_call_texts(call)
    texts += function_call_texts(message.get("function_call"))
    return [text for text in texts if text]


def message_tokens(message: Mapping[str, Any], count: TextCounter, rules: ChatRules) -> int:
    """One message's tokens: ``per_message`` plus its fields (see the module docstring)."""
    total = rules.per_message
    for key, value in message.items():
        if key == "content":
            total += content_tokens(value, count, rules)
        elif key == "tool_calls":
            calls = value if isinstance(value, list) else []
            total += sum(_function_call_tokens(call, count) for call in calls)
        elif key == "function_call":
            total += _function_call_tokens(value, count)
        elif isinstance(value, str):
            total += count(value)
            if key == "name":
                total += rules.per_name
    return total


def messages_tokens(messages: object, count: TextCounter, rules: ChatRules) -> int:
    """All messages plus the reply priming; non-mapping entries are ignored."""
    items = messages if isinstance(messages, list | tuple) else []
    body = sum(message_tokens(m, count, rules) for m in items if isinstance(m, Mapping))
    return body + _REPLY_PRIMING


def _without_final_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def _properties_tokens(properties: Mapping[str, Any], count: TextCounter) -> int:
    total = _PROP_INIT
    for key, prop in properties.items():
        total += _PROP_KEY
        schema = prop if isinstance(prop, Mapping) else {}
        enum = schema.get("enum")
        if isinstance(enum, list):
            total += _ENUM_INIT
            total += sum(_ENUM_ITEM + count(str(item)) for item in enum)
        kind = schema.get("type")
        kind_text = " | ".join(map(str, kind)) if isinstance(kind, list) else _str(kind)
        description = _without_final_period(_str(schema.get("description")))
        total += count(f"{key}:{kind_text}:{description}")
        # Beyond the cookbook (unverified): nested objects and arrays of objects are counted with
        # the same per-property rule instead of being ignored, so big schemas are not free.
        items = schema.get("items")
        nested = (items if isinstance(items, Mapping) else schema).get("properties")
        if isinstance(nested, Mapping) and nested:
            total += _properties_tokens(nested, count)
    return total


def _function_tokens(tool: Mapping[str, Any], count: TextCounter, rules: ChatRules) -> int:
    # Chat tools are {"type": "function", "function": {...}}; Responses tools and the legacy
    # `functions` parameter are the function object itself.
    function = tool.get("function", tool)
    if not isinstance(function, Mapping):
        return 0
    name = _str(function.get("name"))
    description = _without_final_period(_str(function.get("description")))
    total = rules.func_init + count(f"{name}:{description}")
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if isinstance(properties, Mapping) and properties:
        total += _properties_tokens(properties, count)
    return total


def tools_tokens(tools: object, count: TextCounter, rules: ChatRules) -> int:
    """The cookbook's tool rule over function tools; 0 without any.

    Non-function tools (the Responses API's built-ins such as ``web_search``) count 0.
    """
    functions = [
        tool
        for tool in (tools if isinstance(tools, list | tuple) else [])
        if isinstance(tool, Mapping) and tool.get("type", "function") == "function"
    ]
    if not functions:
        return 0
    return sum(_function_tokens(tool, count, rules) for tool in functions) + _FUNC_END


def tool_choice_tokens(tool_choice: object, count: TextCounter) -> int:
    """LiteLLM's heuristic (not API-verified): +1 for ``"none"``, +7 + name for a named tool."""
    if tool_choice == "none":
        return 1
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function", tool_choice)
        name = _str(function.get("name")) if isinstance(function, Mapping) else ""
        if name:
            return 7 + count(name)
    return 0
