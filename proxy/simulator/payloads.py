"""Response bodies and SSE events of chat, legacy completions, embeddings and models.

Streams are generators of `Event`s: the bytes to write plus the usage those bytes report (or None),
so the sender can tell which usage really reached the wire. Stream-shaping faults that change the
content (usage on every chunk, usage twice, endless text) are applied here; the ones that act on
the transport (delays, cuts, garbage lines) are applied by the sender.
"""

from __future__ import annotations

import base64
import itertools
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import msgspec

from proxy.simulator.tokens import Usage

__all__ = [
    "DONE",
    "Event",
    "Reply",
    "StreamShape",
    "chat_body",
    "chat_events",
    "completion_body",
    "completion_events",
    "embedding_vector",
    "embeddings_body",
    "model_body",
    "models_body",
    "sse",
    "text_pieces",
]

Event = tuple[bytes, Usage | None]
"""One SSE event as written to the wire, with the usage it carries (None if it carries none)."""

DONE: Event = (b"data: [DONE]\n\n", None)
"""The sentinel that ends chat and legacy completion streams."""

_FINGERPRINT = "fp_sim"
_MODEL_CREATED = 1_700_000_000  # fixed, so model listings are byte-for-byte stable


class Reply(NamedTuple):
    """Everything needed to render one generation answer."""

    id: str
    created: int
    model: str
    choices: int
    visible: int
    finish_reason: str
    usage: Usage | None
    """None when usage is to be left out (`no_usage`)."""


class StreamShape(NamedTuple):
    """How a stream carries usage, from the request and the faults."""

    include_usage: bool
    every_chunk: bool
    twice: bool
    endless: bool


def sse(payload: object) -> bytes:
    """A `data:` SSE event holding `payload` as JSON."""
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def text_pieces(visible: int | None) -> Iterator[str]:
    """The streamed words `"w0"`, `" w1"`, …: they concatenate to the full text; None: forever."""
    positions = itertools.count() if visible is None else range(visible)
    for position in positions:
        yield f" w{position}" if position else "w0"


def _text(visible: int) -> str:
    return "".join(text_pieces(visible))


def chat_body(reply: Reply) -> bytes:
    """A non-streaming `chat.completion`."""
    message = {"role": "assistant", "content": _text(reply.visible), "refusal": None}
    choice = {"message": message, "logprobs": None, "finish_reason": reply.finish_reason}
    body: dict[str, object] = {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": index, **choice} for index in range(reply.choices)],
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    if reply.usage is not None:
        body["usage"] = reply.usage.chat()
    return msgspec.json.encode(body)


def completion_body(reply: Reply) -> bytes:
    """A non-streaming legacy `text_completion`."""
    text = _text(reply.visible)
    choice = {"text": text, "logprobs": None, "finish_reason": reply.finish_reason}
    body: dict[str, object] = {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": index, **choice} for index in range(reply.choices)],
        "system_fingerprint": _FINGERPRINT,
    }
    if reply.usage is not None:
        body["usage"] = reply.usage.chat()
    return msgspec.json.encode(body)


def _chat_choice(index: int, text: str | None, finish: str | None) -> dict[str, object]:
    delta = {} if text is None else {"content": text}
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _completion_choice(index: int, text: str | None, finish: str | None) -> dict[str, object]:
    return {"text": text or "", "index": index, "logprobs": None, "finish_reason": finish}


def chat_events(reply: Reply, shape: StreamShape) -> Iterator[Event]:
    """A `chat.completion.chunk` stream: role, one word per chunk, finish, usage, `[DONE]`."""
    role = {"role": "assistant", "content": "", "refusal": None}
    opening: Iterable[dict[str, object]] = (
        {"index": index, "delta": role, "logprobs": None, "finish_reason": None}
        for index in range(reply.choices)
    )
    return _events(reply, shape, "chat.completion.chunk", opening, _chat_choice)


def completion_events(reply: Reply, shape: StreamShape) -> Iterator[Event]:
    """A legacy `text_completion` stream: one word per chunk, finish, usage, `[DONE]`."""
    return _events(reply, shape, "text_completion", (), _completion_choice)


def _events(
    reply: Reply,
    shape: StreamShape,
    kind: str,
    opening: Iterable[dict[str, object]],
    choice: Callable[[int, str | None, str | None], dict[str, object]],
) -> Iterator[Event]:
    head = {"id": reply.id, "object": kind, "created": reply.created, "model": reply.model}
    head["system_fingerprint"] = _FINGERPRINT
    sent = 0  # content tokens sent so far over all choices, for cumulative usage

    def chunk(body: dict[str, object]) -> Event:
        data: dict[str, object] = {**head, "choices": [body]}
        usage = None
        if shape.every_chunk and reply.usage is not None:
            usage = reply.usage.so_far(sent)
            data["usage"] = usage.chat()
        elif shape.include_usage:
            data["usage"] = None  # OpenAI's marker on every chunk but the usage one
        return sse(data), usage

    for body in opening:
        yield chunk(body)
    for piece in text_pieces(None if shape.endless else reply.visible):
        for index in range(reply.choices):
            sent += 1
            yield chunk(choice(index, piece, None))
    for index in range(reply.choices):
        yield chunk(choice(index, None, reply.finish_reason))
    if shape.include_usage and reply.usage is not None:
        event = sse({**head, "choices": [], "usage": reply.usage.chat()})
        for _ in range(2 if shape.twice else 1):
            yield event, reply.usage
    yield DONE


def embedding_vector(item: object, dimensions: int) -> list[float]:
    """A small deterministic vector for one input item.

    Values are multiples of 1/256 in [-0.5, 0.5), exact in float32, so the base64 encoding
    round-trips to the same numbers as the float encoding.
    """
    state = zlib.crc32(msgspec.json.encode(item))
    vector = []
    for _ in range(dimensions):
        # A linear congruential step per position: cheap, and no visible period in 4096 values.
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        vector.append((((state >> 16) & 0xFF) - 128) / 256)
    return vector


def embeddings_body(
    model: str, vectors: list[list[float]], usage: Usage | None, *, as_base64: bool
) -> bytes:
    """An embeddings `list`; base64 vectors are little-endian float32, as OpenAI sends them."""
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                if as_base64
                else vector
            ),
        }
        for index, vector in enumerate(vectors)
    ]
    body: dict[str, object] = {"object": "list", "data": data, "model": model}
    if usage is not None:
        body["usage"] = usage.embeddings()
    return msgspec.json.encode(body)


def _model(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


def models_body(model_ids: Iterable[str]) -> bytes:
    """The `GET /v1/models` list."""
    return msgspec.json.encode({"object": "list", "data": [_model(m) for m in model_ids]})


def model_body(model_id: str) -> bytes:
    """One `GET /v1/models/{id}` object."""
    return msgspec.json.encode(_model(model_id))
