"""The proxied endpoints served straight from ASGI, in front of the Litestar app.

Every proxied request used to cross Litestar's routing, signature model, request and response
objects, exception middleware and, for streams, an anyio task group per stream: about a fifth
of the gateway's CPU per request (bench/RESULTS.md), more than the forwarding itself. Here
the four proxied POST endpoints are one dict lookup away from the server, and everything else
(admin API, usage, models, health, OpenAPI) stays with Litestar.

What Litestar did for these routes, this module does the same way: auth before the body is
read, 415 then 413 (declared or streamed past ``server.max_body_bytes``), errors in OpenAI's
envelope from :mod:`proxy.errors`' one table, an ``x-request-id`` on every response, and a
client that disconnects mid-stream cancels the relay (which meters what was generated).

:func:`serve` answers through a :class:`Responder`: :class:`AsgiResponder` here (any ASGI
server, the tests' ASGI transports), or, under uvicorn, :mod:`proxy.http_protocol` skips ASGI
altogether and passes :class:`~proxy.direct_response.DirectResponder`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
from litestar import Litestar
from litestar.types import Message, Receive, Send

from config import ServerSettings
from metering.errors import MeteringError
from proxy.authorization import single_authorization
from proxy.errors import GatewayError, internal_error, log_server_error, openai_error
from proxy.ids import new_request_id
from proxy.relay import Emit
from proxy.request_head import require_json
from proxy.routes.openai import Reply, forward
from proxy.startup import one_line_failures
from proxy.state import Gateway
from proxy.surfaces import SURFACES, Surface

__all__ = [
    "PROXIED",
    "AsgiResponder",
    "ClientGone",
    "Disconnected",
    "GatewayApp",
    "Responder",
    "serve",
]

#: The proxied paths (Litestar also answered them with a trailing slash).
PROXIED: dict[str, Surface] = {
    f"/v1/{surface.endpoint}{slash}": surface for surface in SURFACES for slash in ("", "/")
}


#: ASGI's ``receive``, as far as reading a request body needs it (any server's types).
ReceiveBody = Callable[[], Awaitable[Mapping[str, Any]]]


class Disconnected(Exception):
    """The client went away before its request body arrived: nobody to answer."""


class Responder(Protocol):
    """How an answer reaches the client: ASGI messages, or the server's own writes."""

    async def send_whole(self, reply: Reply) -> None:
        """Send a reply with a whole body."""

    async def send_stream(self, reply: Reply) -> None:
        """Relay a streamed reply; a client that leaves cancels the relay (it meters)."""


class ClientGone:
    """Called when the client leaves mid-stream: cancels the task relaying the stream, and
    :meth:`relay` then ends quietly instead of passing that cancellation to the server."""

    __slots__ = ("_task", "gone")

    def __init__(self) -> None:
        """For the current task (the one that will call :meth:`relay`)."""
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self.gone = False

    def __call__(self) -> None:
        """The client has left."""
        self.gone = True
        self._task.cancel()

    async def relay(self, reply: Reply, emit: Emit) -> None:
        """Run the reply's relay through ``emit`` (it meters what it read if cancelled)."""
        assert reply.stream is not None
        try:
            await reply.stream(emit)
        except asyncio.CancelledError:
            if self.gone and self._task.uncancel() == 0:
                return  # the client left; the relay has metered (or spawned the metering)
            raise


class GatewayApp(Litestar):
    """The gateway's ASGI app: :data:`PROXIED` paths served here, the rest by Litestar
    (whose lifespan failures are reported through :func:`~proxy.startup.one_line_failures`).

    ``server_settings`` hold the limits the server protocol (:mod:`proxy.http_protocol`)
    keeps each connection to; :func:`~proxy.app.create_app` sets them from the settings.
    """

    server_settings = ServerSettings()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if scope["type"] == "http":
            surface = PROXIED.get(scope["path"])
            if surface is not None:
                await serve(
                    self.state.gateway,
                    surface,
                    self.max_body,
                    scope,
                    receive,
                    AsgiResponder(send, receive),
                )
                return
        elif scope["type"] == "lifespan":
            send = one_line_failures(send)
        await super().__call__(scope, receive, send)

    @property
    def max_body(self) -> int:
        """The request body limit in bytes (0: none)."""
        limit = self.request_max_body_size
        return limit if isinstance(limit, int) else 0


async def serve(
    gateway: Gateway,
    surface: Surface,
    max_body: int,
    scope: Mapping[str, Any],
    receive: ReceiveBody,
    respond: Responder,
) -> None:
    """Answer one request to a proxied endpoint (see the module docstring).

    ``receive`` is ASGI's (the body arrives through it); ``respond`` sends the answer. A 5xx
    answer is logged once, with its request id.
    """
    failure: BaseException | None = None
    try:
        if scope["method"] != "POST":
            raise GatewayError(
                "method_not_allowed", "Method Not Allowed", headers={"allow": "POST"}
            )
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        if len(headers) != len(scope["headers"]):  # a repeated name: which one?
            single_authorization(scope["headers"])
        key = await gateway.auth.authenticate(headers.get("authorization"))
        require_json(headers.get("content-type"))
        body = await _read_body(receive, headers.get("content-length"), max_body)
        reply = await forward(gateway, surface, key, headers, body)
    except (GatewayError, MeteringError) as exc:
        failure = exc
        reply = _error_reply(exc)
    except Disconnected:
        return
    except Exception as exc:  # noqa: BLE001
        # The app's outer boundary, as Litestar's exception middleware is for the other
        # routes: a bug still answers in OpenAI's envelope (with a request id), and is logged.
        failure = exc
        reply = _error_reply(internal_error())
    if reply.status >= 500:
        request_id = next(v for n, v in reply.headers if n == b"x-request-id").decode()
        log_server_error(reply.status, scope["method"], scope["path"], request_id, failure)
    if reply.stream is None:
        await respond.send_whole(reply)
    else:
        await respond.send_stream(reply)


def _error_reply(exc: GatewayError | MeteringError) -> Reply:
    status, document, extra = openai_error(exc)
    headers = [(b"content-type", b"application/json"), (b"x-request-id", new_request_id().encode())]
    for name, value in extra.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return Reply(status, headers, msgspec.json.encode(document))


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        "too_large",
        f"The request body is larger than the gateway's limit of {limit} bytes.",
    )


async def _read_body(receive: ReceiveBody, declared: str | None, limit: int) -> bytes:
    """The request body; 413 as soon as it is declared or read past ``limit`` (0: none)."""
    if limit and declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if limit and size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


class AsgiResponder:
    """A :class:`Responder` speaking ASGI (any ASGI server, and tests' ASGI transports)."""

    __slots__ = ("_receive", "_send")

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive

    async def send_whole(self, reply: Reply) -> None:
        """Send a reply with a whole body."""
        headers = reply.headers
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await self._send(
            {"type": "http.response.start", "status": reply.status, "headers": headers}
        )
        await self._send({"type": "http.response.body", "body": reply.body, "more_body": False})

    async def send_stream(self, reply: Reply) -> None:
        """Relay a stream; a client disconnect cancels the relay (it meters what it read).

        The disconnect is only seen through ``receive``, so one waiter listens for it and
        cancels this task; that cancellation is then absorbed here, not passed to the server
        as an error.
        """
        send = self._send
        leaving = ClientGone()

        def on_message(waiter: asyncio.Future[Message]) -> None:
            if not waiter.cancelled() and waiter.result()["type"] == "http.disconnect":
                leaving()

        waiter = asyncio.ensure_future(_next_disconnect(self._receive))
        waiter.add_done_callback(on_message)

        async def emit(data: bytes, more: bool) -> None:
            if not more:
                # The last write completes the response, which the server reports to
                # ``receive`` as a disconnect: stop listening first.
                waiter.remove_done_callback(on_message)
                waiter.cancel()
            await send({"type": "http.response.body", "body": data, "more_body": more})

        await send(
            {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
        )
        try:
            await leaving.relay(reply, emit)
        finally:
            waiter.remove_done_callback(on_message)
            waiter.cancel()


async def _next_disconnect(receive: Receive) -> Message:
    """The next ``http.disconnect`` (the body is fully read: nothing else can come)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return message
