"""Small parsers for raw SSE bodies, so tests can check the wire format itself."""

from __future__ import annotations

import json
from typing import Any

from openai.types.chat import ChatCompletionMessageParam

CHAT = "/v1/chat/completions"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "one two three"}]
"""A chat prompt of 3 + (3 + 3) = 9 tokens under the simulator's rule."""
TEXT16 = " ".join(f"w{i}" for i in range(16))
"""The default completion text."""


def data_lines(body: str) -> list[str]:
    """The payloads of the `data:` lines, in order."""
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


def chunks(body: str) -> list[dict[str, Any]]:
    """The JSON chunks of a chat/completions stream; asserts it ends with exactly one `[DONE]`."""
    payloads = data_lines(body)
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    return [json.loads(payload) for payload in payloads[:-1]]


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """The `(event, data)` pairs of a Responses stream."""
    pairs = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        pairs.append((lines["event"], json.loads(lines["data"])))
    return pairs
