"""Legacy completions ``prompt`` / embeddings ``input``, and the size of a JSON payload.

Both endpoints accept four shapes (reference/openai-usage.md section 1.3): a string, a list of
strings, a token array (its length is its token count: the client already tokenised it) and a
list of token arrays. There is no per-item overhead on these endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.tokens.chat import TextCounter

__all__ = ["prompt_input_tokens", "text_size"]


def _item_tokens(item: object, count: TextCounter) -> int:
    if isinstance(item, str):
        return count(item)
    if isinstance(item, int) and not isinstance(item, bool):
        return 1  # one token id of a flat token array
    if isinstance(item, list | tuple):
        # A token array (the common case) or, leniently, a list mixing ids and strings.
        return sum(
            count(x) if isinstance(x, str) else 1
            for x in item
            if isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool))
        )
    return 0


def prompt_input_tokens(value: object, count: TextCounter) -> int:
    """Tokens of a ``prompt`` / ``input`` value; anything unrecognised counts 0, never raises."""
    if isinstance(value, list | tuple):
        return sum(_item_tokens(item, count) for item in value)
    return _item_tokens(value, count) if isinstance(value, str) else 0


def text_size(value: object) -> int:
    """Total characters of the strings inside a JSON-like ``value`` (a cheap proxy for work).

    Used to decide whether counting should leave the event loop; iterative, so deeply nested
    input cannot hit the recursion limit.
    """
    size = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return size
