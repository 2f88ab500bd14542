"""uvicorn's httptools protocol, with the writes of one event-loop turn sent as one.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and the body with the next message: two ``send`` calls, two TCP
segments, and on loopback the kernel runs the receiver's side of each inside the sender's
call. The gateway answers a non-streaming request with both messages in the same turn of the
loop, and a relay often has several SSE events to pass on from one upstream read. Holding the
bytes until the end of the turn and writing them together halves the sends of a plain answer
and coalesces bursts of events; nothing waits longer than the current turn, so streams are not
buffered (bench/RESULTS.md has the before/after).

``uvicorn.Config(http=CoalescingHttpToolsProtocol)`` selects it: a protocol class is uvicorn's
documented way to choose the HTTP implementation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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

    def close(self) -> None:
        """Send what is held, then close the real transport."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, ...: the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Hand uvicorn the coalescing stand-in instead of the socket's transport."""
        coalescing = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)  # type: ignore[arg-type]
