"""The request bodies the simulator reads: narrow msgspec Structs, unknown fields ignored.

Only what answering and counting need is declared. Fields whose JSON type varies in OpenAI's API
(`prompt`, `input`) are decoded as plain objects and classified in `tokens`, because a msgspec union
may hold only one array type.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "ChatRequest",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "Message",
    "ResponsesRequest",
    "StreamOptions",
]

_Positive = Annotated[int, msgspec.Meta(ge=1)]


class ContentPart(msgspec.Struct):
    """One part of a list-valued message `content`; only its `text` is counted."""

    text: str | None = None


class Message(msgspec.Struct):
    """A chat message; `content` is a string, a list of parts, or null (e.g. with tool calls)."""

    role: str | None = None
    content: str | list[ContentPart] | None = None


class StreamOptions(msgspec.Struct):
    """`stream_options`; other keys such as `include_obfuscation` are accepted and ignored."""

    include_usage: bool | None = None


class _Generation(msgspec.Struct, kw_only=True):
    # `model` may be absent on Azure-style paths, where the deployment names the model.
    model: str | None = None
    stream: bool | None = None
    # UNSET tells "absent" from an explicit null: strict upstreams reject the key itself.
    stream_options: StreamOptions | msgspec.UnsetType | None = msgspec.UNSET
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] = 1
    max_tokens: _Positive | None = None


class ChatRequest(_Generation, kw_only=True):
    """`POST /v1/chat/completions`."""

    messages: list[Message]
    max_completion_tokens: _Positive | None = None


class CompletionRequest(_Generation, kw_only=True):
    """`POST /v1/completions` (legacy); `prompt` is a string, strings, tokens or token lists."""

    prompt: object


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/embeddings`; `input` is a string, strings, tokens or token lists."""

    model: str | None = None
    input: object
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    encoding_format: Literal["float", "base64"] = "float"


class ResponsesRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/responses`; `input` is a string or a list of input items."""

    model: str | None = None
    input: object = None
    instructions: str | None = None
    stream: bool | None = None
    max_output_tokens: _Positive | None = None
