"""ASGI plumbing shared by the endpoints: one request/response exchange and its transport faults.

An `Exchange` writes JSON answers and SSE streams, and applies the faults that act on the
transport: delays, cuts, malformed bodies and garbage SSE lines. It also records, in the state's
totals, the usage that actually went out on the wire.

A cut returns from the ASGI call with the response unfinished: uvicorn then closes the connection
(logging one "returned without completing response" line), and the client sees a truncated body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from proxy.simulator.config import Faults
from proxy.simulator.errors import SimulatorError
from proxy.simulator.payloads import Event
from proxy.simulator.state import SimulatorState
from proxy.simulator.tokens import Usage

__all__ = ["ASGIMessage", "Exchange", "Receive", "Scope", "Send", "send_json"]

Scope = MutableMapping[str, Any]
"""An ASGI connection scope."""
ASGIMessage = MutableMapping[str, Any]
"""An ASGI event, received or sent."""
Receive = Callable[[], Awaitable[ASGIMessage]]
"""The ASGI `receive` channel."""
Send = Callable[[ASGIMessage], Awaitable[None]]
"""The ASGI `send` channel."""

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
# Valid JSON up to the point where it stops: what a crashed upstream might leave behind.
_MALFORMED_JSON = b'{"id": "sim", "object": "chat.completion", "choices": [{"index": 0, "mess'
_GARBAGE_SSE = b'data: {"id": oops, this is not json\n\n'
_GARBAGE_AFTER = 2  # events sent before the garbage line: past the opening, inside the content
_NEVER_END_TICK_MS = 100  # pace of a never-ending stream when no chunk delay is given


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    stop_at: int | None = None,
) -> None:
    """Send a JSON response; with `stop_at`, only that many bytes of it, leaving it unfinished."""
    length = (b"content-length", str(len(body)).encode())
    start = {"type": "http.response.start", "status": status, "headers": [_JSON, length, *headers]}
    await send(start)
    if stop_at is None:
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.body", "body": body[:stop_at], "more_body": True})


class Exchange:
    """One API request and its answer, under the faults resolved for it."""

    __slots__ = ("_gone", "_receive", "_send", "_watcher", "body", "faults", "number", "state")

    def __init__(
        self, receive: Receive, send: Send, state: SimulatorState, faults: Faults, body: bytes
    ) -> None:
        """Bind the ASGI channels; `body` is the request body, already read in full."""
        self._receive = receive
        self._send = send
        self._gone: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.state = state
        self.faults = faults
        self.body = body
        self.number = state.next_number()

    @property
    def client_gone(self) -> bool:
        """Whether the client has disconnected (known only once something started watching)."""
        return self._gone is not None and self._gone.is_set()

    def _watch_client(self) -> asyncio.Event:
        # Watching needs a task reading `receive`; start it only for answers that take time.
        if self._gone is None:
            self._gone = asyncio.Event()
            self._watcher = asyncio.create_task(self._watch(self._gone))
        return self._gone

    async def pause(self, milliseconds: int) -> bool:
        """Sleep, waking early if the client disconnects; returns whether it is still there."""
        gone = self._watch_client()
        if gone.is_set():
            return False
        try:
            async with asyncio.timeout(milliseconds / 1000):
                await gone.wait()
        except TimeoutError:
            return True
        return False

    async def _watch(self, gone: asyncio.Event) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        gone.set()

    def close(self) -> None:
        """Stop watching the client."""
        if self._watcher is not None:
            self._watcher.cancel()

    def _headers(self, extra: Sequence[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", b"req_sim%d" % self.number), *extra]

    async def error(self, error: SimulatorError) -> None:
        """Send an OpenAI error envelope."""
        await send_json(self._send, error.status, error.body(), self._headers(error.headers))

    async def json(self, body: bytes, usage: Usage | None = None) -> None:
        """Send a 200 JSON answer reporting `usage`, under the `malformed_json` and cut faults."""
        if self.faults.malformed_json:
            body, usage = _MALFORMED_JSON, None
        cut = self.faults.cut_after
        if cut is not None:
            # Announce the full length, then stop short: the client sees a truncated body.
            stop_at = min(cut, len(body) - 1)
            await send_json(self._send, 200, body, self._headers(), stop_at=stop_at)
            return
        await send_json(self._send, 200, body, self._headers())
        if usage is not None and not self.client_gone:
            self.state.record_usage(usage)

    async def stream(self, events: Iterable[Event]) -> None:
        """Send an SSE stream, under the chunk delay, cut, garbage and never-end faults."""
        faults = self.faults
        headers = self._headers(_SSE_HEADERS)
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        gone = self._watch_client()
        interval = faults.chunk_delay_ms or (_NEVER_END_TICK_MS if faults.never_end else 0)
        deadline = time.monotonic() + self.state.config.max_stream_seconds
        sent = 0
        reported: Usage | None = None
        try:
            for data, usage in events:
                if sent == faults.cut_after:
                    return
                if interval and sent:
                    if not await self.pause(interval):
                        return
                else:
                    # Yield between events as a real upstream does: other requests get a turn,
                    # and a disconnect is noticed before more is written to a dead socket.
                    await asyncio.sleep(0)
                    if gone.is_set():
                        return
                if faults.never_end and time.monotonic() >= deadline:
                    break
                await self._write(data)
                sent += 1
                if usage is not None and not gone.is_set():
                    reported = usage
                if faults.malformed_sse and sent == _GARBAGE_AFTER:
                    await self._write(_GARBAGE_SSE)
            if sent == faults.cut_after:
                return
            await self._send({"type": "http.response.body", "body": b""})
        finally:
            # Whatever usage went out counts, even on a stream that was cut afterwards.
            if reported is not None:
                self.state.record_usage(reported)

    async def _write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
