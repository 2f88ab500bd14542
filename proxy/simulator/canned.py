"""The canned fast path: chat completions answered with bytes rendered once, for benchmarks.

A proxy benchmark runs the simulator beside the gateway on the same cores, so every microsecond
the upstream spends per request is taken from the gateway being measured. With
`SimulatorConfig.canned` set, `POST /v1/chat/completions` skips the request log, the counters,
the `x-sim-*` headers, the API key check, the full request validation and the token counting:
it reads only `stream` and `stream_options.include_usage` and writes a reply rendered at
start-up from the server's default faults (so `--chunks 32` gives 32 content chunks). Usage
numbers are those of a fixed prompt, whatever the request says; ids are the same on every
answer. Streams are still written one event per `send`, as a real upstream writes them, with
the faults' `chunk_delay_ms` between events (a model's pace; 0: back to back).
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from proxy.simulator.config import Faults
from proxy.simulator.exchange import Send
from proxy.simulator.payloads import Reply, StreamShape, chat_body, chat_events
from proxy.simulator.tokens import Usage, plan_completion

__all__ = ["CANNED_PROMPT_TOKENS", "CannedChat"]

#: Prompt tokens every canned answer reports (a short one-message chat).
CANNED_PROMPT_TOKENS = 16

_JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-request-id", b"req_sim_canned")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-request-id", b"req_sim_canned"),
]


class _Options(msgspec.Struct):
    include_usage: bool | None = None


class _Head(msgspec.Struct):
    stream: bool | None = None
    stream_options: _Options | None = None


_HEAD = msgspec.json.Decoder(_Head)


class CannedChat:
    """Pre-rendered chat answers: one JSON body and two streams (with and without usage)."""

    __slots__ = ("_body", "_gap", "_json_start", "_stream", "_stream_usage")

    def __init__(self, faults: Faults, model: str = "gpt-4o-mini") -> None:
        """Render the answers for the token knobs of ``faults`` (delays and faults ignored)."""
        self._gap = faults.chunk_delay_ms / 1000
        completion = plan_completion(faults, None)
        usage = Usage.of(CANNED_PROMPT_TOKENS, 1, completion, faults)
        reply = Reply(
            id="chatcmpl-sim-canned",
            created=int(time.time()),
            model=model,
            choices=1,
            visible=completion.visible,
            finish_reason=completion.finish_reason,
            usage=usage,
        )
        self._body = chat_body(reply)
        length = (b"content-length", str(len(self._body)).encode())
        self._json_start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON_HEADERS, length],
        }
        self._stream = self._events(reply, include_usage=False)
        self._stream_usage = self._events(reply, include_usage=True)

    @staticmethod
    def _events(reply: Reply, *, include_usage: bool) -> tuple[bytes, ...]:
        shape = StreamShape(
            include_usage=include_usage, every_chunk=False, twice=False, endless=False
        )
        return tuple(data for data, _ in chat_events(reply, shape))

    async def answer(self, body: bytes, send: Send) -> None:
        """Answer one chat request; a body that is not a JSON object gets the plain reply."""
        try:
            head = _HEAD.decode(body)
        except msgspec.DecodeError:
            head = _Head()
        if not head.stream:
            await send(self._json_start)
            await send({"type": "http.response.body", "body": self._body})
            return
        options = head.stream_options
        events = (
            self._stream_usage if options is not None and options.include_usage else self._stream
        )
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        for number, data in enumerate(events):
            if self._gap and number:
                await asyncio.sleep(self._gap)
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
