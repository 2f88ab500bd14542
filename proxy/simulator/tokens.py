"""Deterministic token counting, so tests can predict every usage number exactly.

`words(s)` is `len(s.split())`: the number of whitespace-separated words.

Prompt side:

- chat: `3 + Σ_messages (3 + words(content))`. `content` is the string, or the sum over the `text`
  of each content part; null content counts 0. Roles, names and tool calls count nothing.
- legacy completions `prompt` and embeddings `input`: a string counts `words(s)`, a token array
  counts its length, and a list of either sums its items.
- responses: `3 + words(instructions) + Σ_items (3 + words(content))`; a string `input` is one item;
  an item's content is a string or the `text` of its parts.
- `cached_tokens = min(faults.cached_tokens, prompt_tokens)`.

Completion side, per choice:

- `C = faults.chunks if set else faults.completion_tokens`, capped by `max_completion_tokens` /
  `max_tokens` (chat), `max_tokens` (completions) or `max_output_tokens` (responses).
- `R = min(faults.reasoning_tokens, C)` hidden reasoning tokens; the visible text is the `C - R`
  words `"w0 w1 w2 …"`, streamed one word (one token) per content chunk.
- `finish_reason` is `"length"` when the cap cut `C`, else `"stop"`.

Choices: `n` for chat; `n × number of prompts` for completions; 1 for responses.
Reported: `prompt_tokens` (counted once), `completion_tokens = choices × C`,
`reasoning_tokens = choices × R`, `total_tokens = prompt_tokens + completion_tokens`.
Embeddings report `prompt_tokens` and `total_tokens` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from proxy.simulator.config import Faults
from proxy.simulator.errors import SimulatorError
from proxy.simulator.schema import Message

__all__ = [
    "Completion",
    "Usage",
    "chat_prompt_tokens",
    "input_items",
    "item_tokens",
    "plan_completion",
    "responses_input_tokens",
    "words",
]

_MESSAGE_OVERHEAD = 3
_REPLY_PRIMING = 3


def words(text: str) -> int:
    """Tokens in a string: its whitespace-separated words."""
    return len(text.split())


def chat_prompt_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a chat request (see the module docstring)."""
    total = _REPLY_PRIMING
    for message in messages:
        total += _MESSAGE_OVERHEAD
        content = message.content
        if isinstance(content, str):
            total += words(content)
        elif content is not None:
            total += sum(words(part.text) for part in content if part.text is not None)
    return total


def input_items(value: object, param: str) -> list[str | list[int]]:
    """Split a `prompt` / `input` into its items: strings or token arrays.

    A string or a token array is one item; a list of either is its items. Any other shape is a
    400 `SimulatorError` naming `param`.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return list(value)
        if all(map(_is_token, value)):
            return [value]
        if all(isinstance(item, list) and item and all(map(_is_token, item)) for item in value):
            return list(value)
    raise SimulatorError(400, f"'$.{param}' is invalid.", param=param, code="invalid_value")


def item_tokens(item: str | list[int]) -> int:
    """Tokens of one prompt / input item: words of a string, length of a token array."""
    return words(item) if isinstance(item, str) else len(item)


def _is_token(item: object) -> bool:
    # bool is an int subclass, but `true` is no token id.
    return isinstance(item, int) and not isinstance(item, bool)


def responses_input_tokens(instructions: str | None, value: object) -> int:
    """Input tokens of a Responses request (see the module docstring)."""
    total = _REPLY_PRIMING + (words(instructions) if instructions else 0)
    if value is None:
        return total
    if isinstance(value, str):
        return total + _MESSAGE_OVERHEAD + words(value)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SimulatorError(400, "'$.input' is invalid.", param="input", code="invalid_value")
    for item in value:
        total += _MESSAGE_OVERHEAD + _content_words(item.get("content"))
    return total


def _content_words(content: object) -> int:
    if isinstance(content, str):
        return words(content)
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, dict))
        return sum(words(text) for text in texts if isinstance(text, str))
    return 0


class Completion(NamedTuple):
    """What one choice generates: `tokens` in all, of which `reasoning` are hidden."""

    tokens: int
    reasoning: int
    truncated: bool

    @property
    def visible(self) -> int:
        """Words of visible text, one token each."""
        return self.tokens - self.reasoning

    @property
    def finish_reason(self) -> str:
        """OpenAI's `finish_reason` for this choice."""
        return "length" if self.truncated else "stop"


def plan_completion(faults: Faults, cap: int | None) -> Completion:
    """The per-choice completion for these faults and the request's token cap."""
    wanted = faults.chunks if faults.chunks is not None else faults.completion_tokens
    tokens = wanted if cap is None else min(wanted, cap)
    return Completion(tokens, min(faults.reasoning_tokens, tokens), tokens < wanted)


class Usage(msgspec.Struct, frozen=True):
    """Usage of one response, rendered in each endpoint's wire shape."""

    prompt: int
    completion: int = 0
    cached: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, prompt: int, choices: int, completion: Completion, faults: Faults) -> Usage:
        """The usage of `choices` identical choices after a prompt of `prompt` tokens."""
        return cls(
            prompt,
            choices * completion.tokens,
            min(faults.cached_tokens, prompt),
            choices * completion.reasoning,
        )

    @property
    def total(self) -> int:
        """`prompt + completion`."""
        return self.prompt + self.completion

    def so_far(self, visible: int) -> Usage:
        """Cumulative usage once `visible` content tokens (over all choices) have been sent.

        Reasoning happens before the visible text, so it is counted from the first chunk.
        """
        return msgspec.structs.replace(self, completion=self.reasoning + visible)

    def chat(self) -> dict[str, object]:
        """`CompletionUsage` of chat and legacy completions."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def responses(self) -> dict[str, object]:
        """`ResponseUsage` of the Responses API."""
        return {
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.completion,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total,
        }

    def embeddings(self) -> dict[str, object]:
        """Usage of embeddings: no completion side."""
        return {"prompt_tokens": self.prompt, "total_tokens": self.prompt}
