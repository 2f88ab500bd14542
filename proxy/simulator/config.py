"""Settings of the simulated OpenAI upstream: fixed server settings and per-request behaviour.

`SimulatorConfig` is fixed for the life of a server. `Faults` holds every per-request switch (the
fault injections and the token knobs). The `Faults` that governs one request is resolved from three
layers; a later layer wins field by field:

1. `SimulatorConfig.faults`, the server's defaults;
2. the server-wide faults set through `POST /_sim/faults` (optionally for the next `times`
   requests only), which replace layer 1 until `DELETE /_sim/faults`;
3. `x-sim-<field>` request headers, the field name with `-` for `_` (`x-sim-delay-ms: 200`,
   `x-sim-no-usage: true`).

Layers 2 and 3 are validated by msgspec against `Faults`, so a misspelt field or a wrong type is a
400 rather than a silently ignored switch.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "DEFAULT_MODELS",
    "HEADER_PREFIX",
    "Faults",
    "SimulatorConfig",
    "faults_from_control",
    "faults_from_headers",
]

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4",
    "gpt-4-32k",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
)
"""Model ids listed by `GET /v1/models` unless `SimulatorConfig.models` says otherwise."""

HEADER_PREFIX = b"x-sim-"
"""Request headers starting with this prefix override `Faults` fields for that request only."""

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
# Only error statuses make sense as an injected fault; a 2xx "fault" would be a normal answer.
_ErrorStatus = Annotated[int, msgspec.Meta(ge=400, le=599)]


class Faults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-request behaviour: fault injections and the token knobs of the deterministic counter.

    Attributes:
        status: answer with this HTTP status and an OpenAI error body instead of a result.
        retry_after: with `status`, send `Retry-After: <seconds>`.
        delay_ms: wait this long before sending the response headers.
        chunk_delay_ms: wait this long between two SSE events.
        cut_after: streams: close the connection abruptly after this many SSE events (no usage
            chunk, no `[DONE]`); non-streaming: after this many body bytes.
        no_usage: omit usage everywhere, even from streams that asked for it.
        usage_every_chunk: streams: put the cumulative usage on every chunk (vLLM's
            `continuous_usage_stats`).
        reject_stream_options: 400 `Unknown parameter: 'stream_options'.` when the request has it.
        malformed_json: non-streaming: answer 200 with a body that is not valid JSON.
        malformed_sse: streams: emit one garbage `data:` line after the second event.
        never_end: streams: keep sending content slowly until the client disconnects (bounded by
            `SimulatorConfig.max_stream_seconds`).
        usage_twice: streams: send the usage chunk (or the Responses terminal event) twice.
        completion_tokens: completion tokens per choice, reasoning included.
        cached_tokens: cached prompt tokens (clamped to the prompt).
        reasoning_tokens: hidden reasoning tokens per choice, part of `completion_tokens`.
        chunks: if set, replaces `completion_tokens` (with no reasoning tokens it is the number
            of streamed content chunks per choice).
    """

    status: _ErrorStatus | None = None
    retry_after: Annotated[float, msgspec.Meta(ge=0)] | None = None
    delay_ms: _NonNegative = 0
    chunk_delay_ms: _NonNegative = 0
    cut_after: _NonNegative | None = None
    no_usage: bool = False
    usage_every_chunk: bool = False
    reject_stream_options: bool = False
    malformed_json: bool = False
    malformed_sse: bool = False
    never_end: bool = False
    usage_twice: bool = False
    completion_tokens: _NonNegative = 16
    cached_tokens: _NonNegative = 0
    reasoning_tokens: _NonNegative = 0
    chunks: _NonNegative | None = None


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings fixed for the life of one simulator server.

    Attributes:
        api_key: if set, requests must carry `Authorization: Bearer <key>` or `api-key: <key>`.
        models: ids served by `GET /v1/models`; generation endpoints accept any model name.
        embedding_dimensions: length of embedding vectors when the request gives no `dimensions`.
        faults: the default per-request behaviour (layer 1).
        request_log_size: how many requests `GET /_sim/requests` remembers.
        request_log_body_limit: bytes of each logged body kept (bounds the log's memory).
        max_stream_seconds: upper bound on a `never_end` stream.
        canned: answer `POST /v1/chat/completions` with bytes rendered once from `faults`, with
            no request log, counters, key check or `x-sim-*` headers (benchmarks; see
            `proxy.simulator.canned`).
    """

    api_key: str | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    embedding_dimensions: int = 8
    faults: Faults = Faults()
    request_log_size: int = 50
    request_log_body_limit: int = 256 * 1024
    max_stream_seconds: float = 600.0
    canned: bool = False


def faults_from_control(base: Faults, fields: dict[str, object]) -> Faults:
    """Lay the JSON fields of a control request over `base`; raises `msgspec.ValidationError`."""
    return msgspec.convert({**msgspec.structs.asdict(base), **fields}, Faults)


def faults_from_headers(base: Faults, headers: dict[str, str]) -> Faults:
    """Lay `x-sim-*` header values (already stripped of the prefix) over `base`.

    Header values are text, so msgspec converts them leniently (`"250"` → 250, `"true"` → True).
    Raises `msgspec.ValidationError` on an unknown field or a bad value.
    """
    fields = {name.replace("-", "_"): value for name, value in headers.items()}
    return msgspec.convert({**msgspec.structs.asdict(base), **fields}, Faults, strict=False)
