"""Bodies and semantic SSE events of the Responses API (`POST /v1/responses`).

A stream runs: `response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, one `response.output_text.delta` per word,
`response.output_text.done`, `response.content_part.done`, `response.output_item.done`, then the
terminal `response.completed` (or `response.incomplete` when `max_output_tokens` cut the text).
Only the terminal event carries usage, every event carries a `sequence_number`, and there is no
`[DONE]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import msgspec

from proxy.simulator.payloads import Event, Reply, StreamShape, text_pieces
from proxy.simulator.schema import ResponsesRequest

__all__ = ["response_body", "response_events"]


def _status(reply: Reply) -> str:
    return "incomplete" if reply.finish_reason == "length" else "completed"


def _response(
    reply: Reply, request: ResponsesRequest, status: str, output: list[object], final: bool
) -> dict[str, object]:
    usage = reply.usage.responses() if final and reply.usage is not None else None
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _part(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _item_id(reply: Reply) -> str:
    # One message per response, its id derived from the response id so both stay unique together.
    return "msg_" + reply.id.removeprefix("resp_")


def _message(reply: Reply, status: str, content: list[object]) -> dict[str, object]:
    return {
        "id": _item_id(reply),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _finished(reply: Reply, request: ResponsesRequest) -> tuple[str, dict[str, object]]:
    """The full text and the final response object."""
    status = _status(reply)
    text = "".join(text_pieces(reply.visible))
    output: list[object] = [_message(reply, status, [_part(text)])]
    return text, _response(reply, request, status, output, final=True)


def response_body(reply: Reply, request: ResponsesRequest) -> bytes:
    """A non-streaming `response` object."""
    return msgspec.json.encode(_finished(reply, request)[1])


def response_events(reply: Reply, request: ResponsesRequest, shape: StreamShape) -> Iterator[Event]:
    """The semantic event stream of one response (see the module docstring)."""
    numbers = itertools.count()
    where = {"item_id": _item_id(reply), "output_index": 0, "content_index": 0}

    def event(kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": next(numbers), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"

    opening = _response(reply, request, "in_progress", [], final=False)
    yield event("response.created", response=opening), None
    yield event("response.in_progress", response=opening), None
    added = _message(reply, "in_progress", [])
    yield event("response.output_item.added", output_index=0, item=added), None
    yield event("response.content_part.added", **where, part=_part("")), None
    for piece in text_pieces(None if shape.endless else reply.visible):
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[]), None
    text, final = _finished(reply, request)
    yield event("response.output_text.done", **where, text=text, logprobs=[]), None
    yield event("response.content_part.done", **where, part=_part(text)), None
    done = _message(reply, _status(reply), [_part(text)])
    yield event("response.output_item.done", output_index=0, item=done), None
    terminal = f"response.{_status(reply)}"
    for _ in range(2 if shape.twice else 1):
        yield event(terminal, response=final), reply.usage
