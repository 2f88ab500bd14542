"""uvicorn's httptools protocol, with the writes of one event-loop turn sent as one, and the
gateway's proxied requests answered without ASGI.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body with the next message: two ``send`` calls, two TCP
segments, and on loopback the kernel runs the receiver's side of each inside the sender's
call. The gateway answers a non-streaming request with both messages in the same turn of the
loop, and a relay often has several SSE events to pass on from one upstream read. Holding the
bytes until the end of the turn and writing them together halves the sends of a plain answer
and coalesces bursts of events; nothing waits longer than the current turn, so streams are not
buffered (bench/RESULTS.md has the before/after).

When the app is the gateway's (:class:`~proxy.hot_path.GatewayApp`), a POST to a proxied path
is answered by :func:`~proxy.hot_path.serve` writing through
:class:`~proxy.direct_response.DirectResponder` instead of the ASGI app: the same answer,
without ASGI's per-request layers. Everything else (other paths and methods, the 503 of
``limit_concurrency``) goes to the ASGI app as before.

It also holds every connection to the limits of :class:`config.ServerSettings` (the gateway
app's, else the defaults), where the bytes arrive and before anything grows: a request's line
and headers (and the trailers of a chunked body) are counted as they are fed to the parser
(431 past ``max_header_bytes`` or ``max_headers``, 414 past ``max_request_line_bytes``), and
one timer per connection closes it when a head (408, or quietly when nothing was sent) or a
body (408) takes too long. uvicorn has none of these for httptools: its parser joins a
header's pieces without bound.

``uvicorn.Config(http=CoalescingHttpToolsProtocol)`` selects it: a protocol class is uvicorn's
documented way to choose the HTTP implementation. Parsing, keep-alive, pipelining, flow
control and shutdown stay uvicorn's; what is overridden here is where a request's task starts
(``_start_asgi_task``), what a lost connection also tells a direct stream, and the limits.
This is the one module that uses uvicorn's private names; ``pyproject.toml`` pins the tested
uvicorn versions and ``tests/proxy/test_http_protocol.py`` names any that disappears.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable
from typing import Any

import msgspec
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from config import ServerSettings
from proxy.direct_response import DirectResponder, run_direct
from proxy.errors import GatewayError, error_document
from proxy.hot_path import PROXIED, GatewayApp, serve
from proxy.ids import new_request_id
from proxy.surfaces import Surface

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]

# What a connection is doing, for its timer: reading a head, reading a body, or waiting for
# the gateway's answer (no client deadline then; the upstream's timeouts apply).
_HEAD, _BODY, _ANSWERING = 0, 1, 2
# After a refusal, how long and how much of what the client still sends is read and dropped
# so that the refusal reaches it (see CoalescingHttpToolsProtocol._refuse).
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 1024 * 1024


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that exceeds a limit."""


class CoalescingTransport:
    """Stands in for a transport; writes made in one loop turn reach it as one ``write``.

    Everything else is the real transport's. ``close`` sends what is held first; a transport
    that is already closing gets nothing more (the peer is gone).
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Hold ``data`` until the end of this loop turn."""
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        """Send what is held now, in one write."""
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_now(self, data: bytes) -> None:
        """Send ``data`` at once, after anything held: one write."""
        if self._held:
            self._held.append(data)
            self.flush()
        elif not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Send what is held, then close the real transport."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, ...: the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`, serving
    the gateway's proxied requests directly (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """uvicorn's arguments (``config``, ``server_state``, ...)."""
        super().__init__(*args, **kwargs)
        app = self.config.app
        self._gateway_app = app if isinstance(app, GatewayApp) else None
        self._on_lost: Callable[[], None] | None = None
        self._limits = ServerSettings()
        if self._gateway_app is not None:
            self._limits = self._gateway_app.server_settings
            # Typed int by uvicorn, used as a delay for call_later, which takes any number.
            self.timeout_keep_alive = self._limits.keep_alive_seconds  # type: ignore[assignment]
        # The head (or a chunk header and the trailers after the last chunk) being read: its
        # bytes so far, and how many such sections ended (to tell whether the one that
        # outgrew the limit ended inside it).
        self._reading_head = True
        self._head_bytes = 0
        self._ends = 0
        self._refused: GatewayError | None = None
        self._discard_left: int | None = None
        self._phase = _HEAD
        self._phase_since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Hand uvicorn the coalescing stand-in instead of the socket's transport; start the
        connection's timer (its first head is due within ``header_timeout_seconds``)."""
        self._coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(self._coalescing)  # type: ignore[arg-type]
        self._phase_since = self.loop.time()
        self._timer = self.loop.call_later(self._limits.header_timeout_seconds, self._check_time)

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's handling, then a direct stream in flight learns that its client left."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def _watch_disconnect(self, on_lost: Callable[[], None] | None) -> None:
        self._on_lost = on_lost

    # -- limits -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting a head's bytes before they reach it (431 past the limit)."""
        if self._discard_left is not None:  # refused: only waiting for the client to stop
            self._discard_left -= len(data)
            if self._discard_left < 0:
                self.transport.close()
            return
        if self._reading_head:
            room = self._limits.max_header_bytes - self._head_bytes
            if len(data) > room:
                self._receive_past_room(data, room)
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def _receive_past_room(self, data: bytes, room: int) -> None:
        # Only what fits is parsed: if the head ends in it, the rest is a body or the next
        # request, received as usual; if not, the head is too large and nothing more is read.
        ends = self._ends
        if room > 0:
            self._head_bytes += room
            super().data_received(data[:room])
            if self._discard_left is not None or self.transport.is_closing():
                return  # refused or closed while parsing
        if self._ends == ends:
            limit = self._limits.max_header_bytes
            self._refuse(
                GatewayError(
                    "headers_too_large",
                    f"The request line and headers (or trailers) are larger than the gateway's "
                    f"limit of {limit} bytes.",
                    code="request_header_fields_too_large",
                )
            )
            return
        self.data_received(data[room:])

    def on_url(self, url: bytes) -> None:
        """A piece of the request target; 414 once it is longer than the limit."""
        super().on_url(url)
        limit = self._limits.max_request_line_bytes
        if len(self.url) > limit:
            self._stop_parsing(
                GatewayError(
                    "uri_too_long",
                    f"The request target is longer than the gateway's limit of {limit} bytes.",
                    code="uri_too_long",
                )
            )

    def on_headers_complete(self) -> None:
        """The head is in: 431 past ``max_headers`` lines, else its body is now due within
        ``body_timeout_seconds``."""
        # Counted here rather than per header line (a callback each): the head's bytes are
        # already bounded by max_header_bytes, so the list uvicorn built is bounded too.
        if len(self.headers) > self._limits.max_headers:
            limit = self._limits.max_headers
            self._stop_parsing(
                GatewayError(
                    "headers_too_large",
                    f"The request has more than the gateway's limit of {limit} header lines.",
                    code="request_header_fields_too_large",
                )
            )
        self._ends += 1
        self._reading_head = False
        self._phase = _BODY
        self._phase_since = self.loop.time()
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        """A chunk's size line: until its data comes, the bytes count as a head's. After the
        last (empty) chunk come trailers, which httptools joins as it does headers."""
        self._reading_head = True
        self._head_bytes = 0

    def on_body(self, body: bytes) -> None:
        """uvicorn's; the first data of a chunk ends the section counted since its size line."""
        if self._reading_head:
            self._reading_head = False
            self._ends += 1
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is in: no client deadline until it is answered."""
        super().on_message_complete()
        self._ends += 1
        self._phase = _ANSWERING
        self._reading_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        """uvicorn's (keep-alive, the next pipelined request); once every request read is
        answered, the next head is due within ``header_timeout_seconds`` from now."""
        super().on_response_complete()
        if self._phase != _ANSWERING or self.cycle.response_complete:
            # A head or body that arrived meanwhile was not read (pipelining pauses reading):
            # its time starts now too.
            if self._phase == _ANSWERING:
                self._phase = _HEAD
            self._phase_since = self.loop.time()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused, or the limit that stopped it."""
        refused, self._refused = self._refused, None
        if refused is None:
            super().send_400_response(msg)
        else:
            self._refuse(refused)

    def _stop_parsing(self, error: GatewayError) -> None:
        # httptools turns the exception into a parser error, which uvicorn answers through
        # send_400_response: there, this error is answered instead.
        self._refused = error
        raise _Refused(error.message)

    def _check_time(self) -> None:
        """The connection's timer: close it when its head or body is late, else wait again."""
        limits = self._limits
        phase = self._phase
        if phase == _ANSWERING:
            wait = limits.header_timeout_seconds  # nothing is due from the client: look later
        else:
            limit = limits.header_timeout_seconds if phase == _HEAD else limits.body_timeout_seconds
            wait = self._phase_since + limit - self.loop.time()
            if wait <= 0:
                self._timer = None
                self._time_out(phase)
                return
        self._timer = self.loop.call_later(wait, self._check_time)

    def _time_out(self, phase: int) -> None:
        if self._discard_left is not None or self.transport.is_closing():
            return
        cycle = self.cycle
        if (phase == _HEAD and not self._head_bytes) or (
            phase == _BODY and cycle is not None and cycle.response_started
        ):
            # Nothing of a request was sent (an idle connection), or the request was already
            # answered before its body came: nobody to tell.
            self.transport.close()
            return
        what = "headers" if phase == _HEAD else "body"
        seconds = (
            self._limits.header_timeout_seconds
            if phase == _HEAD
            else self._limits.body_timeout_seconds
        )
        self._refuse(
            GatewayError(
                "request_timeout",
                f"The request's {what} did not arrive within {seconds:g} seconds.",
                code="request_timeout",
            )
        )

    def _refuse(self, error: GatewayError) -> None:
        """Answer ``error`` and close the connection; a request being read is abandoned."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # Its app (waiting for the body) sees a client that left, and answers nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        url: bytes = getattr(self, "url", b"")  # set by uvicorn once a request begins
        transport = self._coalescing
        transport.write_now(_refusal(error, url, self.server_state.default_headers))
        if not transport.can_write_eof():
            transport.close()
            return
        # A close with unread bytes in the socket makes the kernel reset the connection and
        # drop the answer still queued: the client would see a reset, not the refusal. So the
        # answer is ended (FIN), and what the client still sends is read and dropped for a
        # moment (bounded in time and bytes) before the close.
        transport.write_eof()
        self._discard_left = _LINGER_BYTES
        self.flow.resume_reading()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(_LINGER_SECONDS, transport.close)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """Start the request's task: a proxied POST served directly, anything else by ``app``."""
        gateway_app = self._gateway_app
        scope = cycle.scope
        surface = PROXIED.get(scope["path"]) if scope["method"] == "POST" else None
        # ``app`` is another one when uvicorn refuses the request (limit_concurrency's 503).
        if gateway_app is None or surface is None or app is not self.app:
            super()._start_asgi_task(cycle, app)
            return
        responder = DirectResponder(cycle, self._coalescing, self._watch_disconnect)
        answer = _serve(gateway_app, surface, cycle, responder)
        task = self.loop.create_task(run_direct(cycle, self._coalescing, answer))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)


def _refusal(error: GatewayError, path: bytes, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer for ``error``, closing the connection.

    ``path`` is the request target as far as it arrived (it picks Lago's envelope under
    ``/api/v1``, OpenAI's elsewhere); ``default_headers`` are the server's (``date``).
    """
    status, document, _ = error_document(error, path.decode("latin-1"))
    body = msgspec.json.encode(document)
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: %b\r\n"
        b"connection: close\r\n\r\n" % (len(body), new_request_id().encode())
    )
    return b"".join(lines) + body


async def _serve(
    app: GatewayApp, surface: Surface, cycle: RequestResponseCycle, responder: DirectResponder
) -> None:
    # Inside the request's task: a failure here (an app whose start-up never ran has no
    # gateway) is answered by run_direct's 500, not raised into the protocol's callback.
    gateway = app.state.gateway
    await serve(gateway, surface, app.max_body, cycle.scope, cycle.receive, responder)
