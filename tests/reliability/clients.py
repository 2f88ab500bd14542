"""Raw HTTP clients of the gateway that record exactly what a client saw of each request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.reliability.support import MODEL


@dataclass
class Seen:
    """One request as its client saw it."""

    status: int
    request_id: str | None
    stream: bool
    #: The usage the response carried (plain body, or the stream's usage chunk).
    usage: dict[str, Any] | None = None
    #: Plain: the whole body arrived; stream: ``data: [DONE]`` arrived.
    complete: bool = False
    #: The connection broke (as opposed to the stream ending cleanly, with or without [DONE]).
    transport_error: bool = False
    usage_chunks: int = 0
    #: A stream's error event (OpenAI's ``{"error": {...}}`` chunk), if one came.
    error: dict[str, Any] | None = None
    text: str = ""
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def chat_body(stream: bool, *, include_usage: bool = True, words: int = 3) -> dict[str, Any]:
    """A small chat request; streams ask for usage unless told otherwise."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": " ".join(["hello"] * words)}],
    }
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return body


async def chat(
    client: httpx.AsyncClient,
    key: str,
    *,
    stream: bool,
    include_usage: bool = True,
    words: int = 3,
) -> Seen:
    """Send one chat request and read all of it; a transport error mid-stream ends the read."""
    headers = {"Authorization": f"Bearer {key}"}
    body = chat_body(stream, include_usage=include_usage, words=words)
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers=headers
    ) as response:
        seen = Seen(
            response.status_code,
            response.headers.get("x-request-id"),
            stream,
            headers=dict(response.headers),
        )
        if response.status_code != 200 or not stream:
            raw = await response.aread()
            seen.body = json.loads(raw)
            seen.complete = True
            if response.status_code == 200:
                seen.usage = seen.body.get("usage")
            return seen
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    seen.complete = True
                    continue
                chunk = json.loads(data)
                if chunk.get("error"):
                    seen.error = chunk["error"]
                if chunk.get("usage"):
                    seen.usage = chunk["usage"]
                    seen.usage_chunks += 1
                for choice in chunk.get("choices") or []:
                    seen.text += (choice.get("delta") or {}).get("content") or ""
        except httpx.TransportError:
            seen.complete = False
            seen.transport_error = True
    return seen


def metered_matches(seen: Seen, metered: dict[str, int]) -> bool:
    """Whether the events of one request carry exactly the usage its client saw."""
    assert seen.usage is not None
    prompt = metered.get("input", 0) + metered.get("cached_input", 0)
    return (
        prompt == seen.usage["prompt_tokens"]
        and metered.get("output", 0) == (seen.usage["completion_tokens"])
    )
