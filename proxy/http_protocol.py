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

``uvicorn.Config(http=CoalescingHttpToolsProtocol)`` selects it: a protocol class is uvicorn's
documented way to choose the HTTP implementation. Parsing, keep-alive, pipelining, flow
control and shutdown stay uvicorn's; what is overridden here is where a request's task starts
(``_start_asgi_task``) and what a lost connection also tells a direct stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from proxy.direct_response import DirectResponder, run_direct
from proxy.hot_path import PROXIED, GatewayApp, serve
from proxy.surfaces import Surface

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Hand uvicorn the coalescing stand-in instead of the socket's transport."""
        self._coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(self._coalescing)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's handling, then a direct stream in flight learns that its client left."""
        super().connection_lost(exc)
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def _watch_disconnect(self, on_lost: Callable[[], None] | None) -> None:
        self._on_lost = on_lost

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


async def _serve(
    app: GatewayApp, surface: Surface, cycle: RequestResponseCycle, responder: DirectResponder
) -> None:
    # Inside the request's task: a failure here (an app whose start-up never ran has no
    # gateway) is answered by run_direct's 500, not raised into the protocol's callback.
    gateway = app.state.gateway
    await serve(gateway, surface, app.max_body, cycle.scope, cycle.receive, responder)
