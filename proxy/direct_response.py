"""Answers to proxied requests written straight onto the connection, without ASGI.

Under ``tallygate serve`` (and :class:`~proxy.background.BackgroundServer`), a proxied POST
does not go through ASGI: :mod:`proxy.http_protocol` hands the request that uvicorn's parser
has read to :func:`~proxy.hot_path.serve` with a :class:`DirectResponder`, which writes the
status line, headers and body itself. ASGI's per-request layers (the proxy-headers
middleware, the app's dispatch, a message dict per send and uvicorn's checks of every header
against two regular expressions) cost more CPU than this whole module does (bench/RESULTS.md).

What uvicorn's ``RequestResponseCycle`` does around an ASGI app, this does the same way, on the
same cycle object (so the protocol's keep-alive, pipelining, flow control and shutdown work
unchanged): its default headers (``date``), ``connection: close`` when the connection is not
kept alive, ``content-length`` for whole bodies and chunked framing for streams, waiting while
the client's socket buffer is full, and a 500 for an answer that never started.

The header names and values written here are the gateway's own or were parsed by httptools
from the upstream's response, which cannot hold a line break: nothing to re-check.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from proxy.errors import log_server_error
from proxy.hot_path import ClientGone
from proxy.ids import new_request_id
from proxy.routes.openai import Reply

if TYPE_CHECKING:
    from proxy.http_protocol import CoalescingTransport

__all__ = ["DirectResponder", "run_direct"]

log = logging.getLogger("tallygate")

_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()
    for status in http.HTTPStatus
}
_INTERNAL_ERROR = (
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n".encode()


class DirectResponder:
    """A :class:`~proxy.hot_path.Responder` writing HTTP/1.1 onto uvicorn's cycle.

    ``watch_disconnect`` registers a callback the protocol calls once if the connection is
    lost (``None`` unregisters it): a stream's relay is cancelled through it.
    """

    __slots__ = ("_cycle", "_transport", "_watch")

    def __init__(
        self,
        cycle: RequestResponseCycle,
        transport: CoalescingTransport,
        watch_disconnect: Callable[[Callable[[], None] | None], None],
    ) -> None:
        self._cycle = cycle
        self._transport = transport
        self._watch = watch_disconnect

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], framing: bytes) -> list[bytes]:
        cycle = self._cycle
        parts = [_status_line(status)]
        for name, value in cycle.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(framing)
        return parts

    async def _writable(self) -> bool:
        """Wait while the client's socket buffer is full; False if the client is gone."""
        cycle = self._cycle
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        return not cycle.disconnected

    def _complete(self) -> None:
        cycle = self._cycle
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self._transport.close()
        on_response, cycle.on_response = cycle.on_response, _nothing
        on_response()

    async def send_whole(self, reply: Reply) -> None:
        """Status line, headers and body in one write, sent at once."""
        if not await self._writable():
            return
        self._cycle.response_started = True
        body = reply.body
        parts = self._head(reply.status, reply.headers, b"content-length: %d\r\n\r\n" % len(body))
        parts.append(body)
        self._transport.write_now(b"".join(parts))
        self._complete()

    async def send_stream(self, reply: Reply) -> None:
        """Relay a stream in chunked framing; a client that leaves cancels the relay.

        The writes of one loop turn still go out together (the head with the first events
        when they are already in, a burst of events from one upstream read).
        """
        leaving = ClientGone()
        transport = self._transport
        if await self._writable():
            self._cycle.response_started = True
            head = self._head(reply.status, reply.headers, b"transfer-encoding: chunked\r\n\r\n")
            transport.write(b"".join(head))
            self._watch(leaving)
        else:
            # Gone while the upstream was being asked: the relay still runs, cancelled at its
            # first wait, so that what the upstream generates is metered and its call closed.
            leaving()

        async def emit(data: bytes, more: bool) -> None:
            if not more:
                self._watch(None)  # the response ends with this write
            if not await self._writable():
                return
            framed = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
            if more:
                transport.write(framed)
            else:
                transport.write(framed + b"0\r\n\r\n")
                self._complete()

        try:
            await leaving.relay(reply, emit)
        finally:
            self._watch(None)


def _nothing() -> None:
    pass


async def run_direct(
    cycle: RequestResponseCycle,
    transport: CoalescingTransport,
    answer: Coroutine[Any, Any, None],
) -> None:
    """Run ``answer`` (one request's :func:`~proxy.hot_path.serve`) as uvicorn runs an app.

    Whatever escapes it is logged; a response that never started gets a 500 (logged once
    with its request id) and the connection closed, one that started is cut (the client sees
    a truncated response).
    """
    try:
        await answer
    except BaseException as exc:  # uvicorn's boundary around an app, mirrored
        if not cycle.response_started:
            _send_500(cycle, transport, exc)
        else:
            log.error("a proxied request failed after its answer began", exc_info=exc)
            transport.close()
    else:
        if not cycle.response_started and not cycle.disconnected:
            _send_500(cycle, transport, RuntimeError("a proxied request ended without an answer"))
        elif not cycle.response_complete and not cycle.disconnected:
            log.error("a proxied request ended with its answer incomplete")
            transport.close()
    finally:
        cycle.on_response = _nothing


def _send_500(
    cycle: RequestResponseCycle, transport: CoalescingTransport, exc: BaseException
) -> None:
    if cycle.disconnected:
        log.error("a proxied request failed after its client left", exc_info=exc)
        return
    request_id = new_request_id()
    log_server_error(500, cycle.scope["method"], cycle.scope["path"], request_id, exc)
    cycle.response_started = cycle.response_complete = True
    cycle.keep_alive = False
    request_id_line = b"x-request-id: %b\r\n" % request_id.encode()
    transport.write_now(_status_line(500) + request_id_line + _INTERNAL_ERROR)
    transport.close()
