"""The OpenAI endpoints: parse the request, count tokens, answer through the `Exchange`.

Every handler takes the exchange and a `target` from the path: the Azure deployment (which then
names the model) for generation endpoints, the model id for `GET /v1/models/{id}`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec

from proxy.simulator.config import Faults
from proxy.simulator.errors import SimulatorError, decode_request
from proxy.simulator.exchange import Exchange
from proxy.simulator.payloads import (
    Reply,
    StreamShape,
    chat_body,
    chat_events,
    completion_body,
    completion_events,
    embedding_vector,
    embeddings_body,
    model_body,
    models_body,
)
from proxy.simulator.responses import response_body, response_events
from proxy.simulator.schema import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ResponsesRequest,
    StreamOptions,
)
from proxy.simulator.tokens import (
    Completion,
    Usage,
    chat_prompt_tokens,
    input_items,
    item_tokens,
    plan_completion,
    responses_input_tokens,
)

__all__ = ["Handler", "chat", "completions", "embeddings", "get_model", "list_models", "responses"]

Handler = Callable[[Exchange, str | None], Awaitable[None]]
"""An endpoint: the exchange and the path's target (Azure deployment or model id)."""


def _model(target: str | None, model: str | None) -> str:
    # Azure paths name the deployment, which wins over (or stands in for) the body's model.
    chosen = target or model
    if not chosen:
        raise SimulatorError(400, "you must provide a model parameter", param="model")
    return chosen


_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


def _check_roles(request: ChatRequest) -> None:
    # OpenAI's own wording, which echoes the client's value (as real upstreams do).
    for index, message in enumerate(request.messages):
        if message.role is not None and message.role not in _ROLES:
            supported = ", ".join(f"'{role}'" for role in _ROLES[:-1])
            raise SimulatorError(
                400,
                f"Invalid value: '{message.role}'. Supported values are: {supported}, "
                f"and '{_ROLES[-1]}'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )


def _check_stream_options(faults: Faults, request: ChatRequest | CompletionRequest) -> None:
    options = request.stream_options
    if options is msgspec.UNSET:
        return
    if faults.reject_stream_options:
        raise SimulatorError(
            400,
            "Unknown parameter: 'stream_options'.",
            param="stream_options",
            code="unknown_parameter",
        )
    if options is not None and not request.stream:
        raise SimulatorError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )


def _asked_usage(request: ChatRequest | CompletionRequest) -> bool:
    options = request.stream_options
    return isinstance(options, StreamOptions) and options.include_usage is True


def _shape(faults: Faults, asked_usage: bool) -> StreamShape:
    return StreamShape(
        include_usage=asked_usage and not faults.no_usage,
        every_chunk=faults.usage_every_chunk and not faults.no_usage,
        twice=faults.usage_twice,
        endless=faults.never_end,
    )


def _reply(
    ex: Exchange, prefix: str, model: str, choices: int, prompt: int, completion: Completion
) -> Reply:
    usage = None if ex.faults.no_usage else Usage.of(prompt, choices, completion, ex.faults)
    return Reply(
        id=f"{prefix}{ex.number}",
        created=int(time.time()),
        model=model,
        choices=choices,
        visible=completion.visible,
        finish_reason=completion.finish_reason,
        usage=usage,
    )


async def chat(ex: Exchange, target: str | None) -> None:
    """`POST /v1/chat/completions`."""
    request = decode_request(ex.body, ChatRequest)
    model = _model(target, request.model)
    if not request.messages:
        raise SimulatorError(
            400, "[] is too short - 'messages'", param="messages", code="empty_array"
        )
    _check_roles(request)
    _check_stream_options(ex.faults, request)
    cap = request.max_completion_tokens or request.max_tokens
    completion = plan_completion(ex.faults, cap)
    prompt = chat_prompt_tokens(request.messages)
    reply = _reply(ex, "chatcmpl-sim", model, request.n, prompt, completion)
    if request.stream:
        await ex.stream(chat_events(reply, _shape(ex.faults, _asked_usage(request))))
    else:
        await ex.json(chat_body(reply), reply.usage)


async def completions(ex: Exchange, target: str | None) -> None:
    """`POST /v1/completions` (legacy): one choice per prompt and per `n`."""
    request = decode_request(ex.body, CompletionRequest)
    model = _model(target, request.model)
    prompts = input_items(request.prompt, "prompt")
    _check_stream_options(ex.faults, request)
    completion = plan_completion(ex.faults, request.max_tokens)
    prompt = sum(map(item_tokens, prompts))
    reply = _reply(ex, "cmpl-sim", model, len(prompts) * request.n, prompt, completion)
    if request.stream:
        await ex.stream(completion_events(reply, _shape(ex.faults, _asked_usage(request))))
    else:
        await ex.json(completion_body(reply), reply.usage)


async def embeddings(ex: Exchange, target: str | None) -> None:
    """`POST /v1/embeddings`: one deterministic vector per input item."""
    request = decode_request(ex.body, EmbeddingRequest)
    model = _model(target, request.model)
    items = input_items(request.input, "input")
    dimensions = request.dimensions or ex.state.config.embedding_dimensions
    vectors = [embedding_vector(item, dimensions) for item in items]
    usage = None if ex.faults.no_usage else Usage(sum(map(item_tokens, items)))
    as_base64 = request.encoding_format == "base64"
    await ex.json(embeddings_body(model, vectors, usage, as_base64=as_base64), usage)


async def responses(ex: Exchange, target: str | None) -> None:
    """`POST /v1/responses`."""
    request = decode_request(ex.body, ResponsesRequest)
    model = _model(target, request.model)
    prompt = responses_input_tokens(request.instructions, request.input)
    completion = plan_completion(ex.faults, request.max_output_tokens)
    reply = _reply(ex, "resp_sim", model, 1, prompt, completion)
    if request.stream:
        await ex.stream(response_events(reply, request, _shape(ex.faults, asked_usage=False)))
    else:
        await ex.json(response_body(reply, request), reply.usage)


async def list_models(ex: Exchange, target: str | None) -> None:
    """`GET /v1/models`."""
    await ex.json(models_body(ex.state.config.models))


async def get_model(ex: Exchange, target: str | None) -> None:
    """`GET /v1/models/{id}`: 404 `model_not_found` for ids the config does not list."""
    if target is None or target not in ex.state.config.models:
        raise SimulatorError(
            404,
            f"The model '{target}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    await ex.json(model_body(target))
