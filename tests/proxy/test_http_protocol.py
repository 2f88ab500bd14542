"""The coalescing HTTP protocol: one write per loop turn, nothing held past the turn."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from proxy.background import BackgroundServer
from proxy.http_protocol import CoalescingTransport

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RecordingTransport(asyncio.Transport):
    """Stands for the socket's transport: records each write as the kernel would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return f"info:{name}"


async def test_writes_of_one_turn_become_one_write_and_later_turns_their_own() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b"body")
    assert real.writes == []  # held until the end of this turn
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]
    assert transport.get_extra_info("peername") == "info:peername"


async def test_close_sends_what_is_held_and_a_closing_transport_gets_nothing() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert real.writes == [b"last words"]
    assert real.closing
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert real.writes == [b"last words"]


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """Plain answers at /plain; at /stream, each chunk only after the client has read the
    previous one (a shared event), so a held first chunk would hang the test."""
    assert scope["type"] == "http"
    if scope["path"] == "/plain":
        body = b"x" * 100_000  # larger than one segment and the default write buffer
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    app_state = scope["app_state"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for number in range(3):
        await send({"type": "http.response.body", "body": b"chunk%d\n" % number, "more_body": True})
        await asyncio.wrap_future(app_state.pop(0))
    await send({"type": "http.response.body", "body": b"end\n"})


def test_answers_and_streams_through_a_real_server() -> None:
    acks: list[concurrent.futures.Future[None]] = [concurrent.futures.Future() for _ in range(3)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app_state"] = list(acks)  # the app pops its copy; the test keeps the list
        await _app(scope, receive, send)

    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # one kept-alive connection, several answers
            answer = client.get("/plain")
            assert answer.status_code == 200
            assert answer.content == b"x" * 100_000
        with client.stream("GET", "/stream") as stream:
            lines = stream.iter_lines()
            for number in range(3):
                assert next(lines) == f"chunk{number}"
                acks[number].set_result(None)
            assert next(lines) == "end"


def test_a_malformed_request_still_gets_its_400_before_the_close() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    with (
        BackgroundServer(app) as server,
        socket.create_connection((server.host, server.port), timeout=5) as sock,
    ):
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400")


async def test_every_uvicorn_internal_the_protocol_relies_on_still_exists() -> None:
    """proxy.http_protocol (and proxy.direct_response) override and read uvicorn's internals;
    an upgrade that drops one fails here, naming uvicorn, rather than in a request."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.server import ServerState

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("never called")

    methods = (
        "_start_asgi_task",
        "data_received",
        "send_400_response",
        "on_message_begin",
        "on_body",
        "on_url",
        "on_headers_complete",
        "on_message_complete",
        "on_response_complete",
        "connection_made",
        "connection_lost",
    )
    missing = [name for name in methods if not callable(getattr(HttpToolsProtocol, name, None))]
    protocol = HttpToolsProtocol(
        uvicorn.Config(app, log_config=None), ServerState(), {}, asyncio.get_running_loop()
    )
    protocol.on_message_begin()
    attributes = ("loop", "cycle", "flow", "url", "headers", "server_state", "timeout_keep_alive")
    for name in (*attributes, "tasks"):
        if not hasattr(protocol, name):
            missing.append(f"HttpToolsProtocol.{name}")
    if not hasattr(protocol.server_state, "default_headers"):
        missing.append("ServerState.default_headers")
    cycle = RequestResponseCycle(
        scope=protocol.scope,
        transport=RecordingTransport(),
        flow=None,  # type: ignore[arg-type]
        logger=protocol.logger,
        access_logger=protocol.access_logger,
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    for name in (
        "disconnected",
        "message_event",
        "response_started",
        "response_complete",
        "keep_alive",
        "flow",
        "on_response",
        "default_headers",
        "receive",
    ):
        if not hasattr(cycle, name):
            missing.append(f"RequestResponseCycle.{name}")
    assert not missing, (
        f"uvicorn {uvicorn.__version__} no longer has {missing}: proxy.http_protocol relies on "
        "them; adapt it, or keep uvicorn at the versions pyproject.toml allows"
    )
