"""What a client can make the gateway hold before it is authenticated, on real sockets: a
request's head is bounded in bytes (431), header lines (431) and target length (414), and a
connection that sends its head or body too slowly (slowloris) or nothing at all is closed."""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import ADMIN_KEY, ServedGateway, served_gateway

#: Short timeouts for the local gateway: a slow client is one slower than this.
FAST = {"header_timeout_seconds": 0.5, "body_timeout_seconds": 0.5}


class Connection:
    """A raw HTTP/1.1 connection: send bytes, read one answer or the server's close."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.received = b""

    def answered(self) -> bool:
        """Whether the server has sent something (or closed) by now, without waiting."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the server has stopped taking it (refused, closed)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def answer(self, *, done_sending: bool = True) -> tuple[int, dict[str, str], Any]:
        """Status, headers and JSON body of the one answer on this connection, read until the
        server closes the connection (every refusal closes it). ``done_sending`` half-closes
        first, so that the server need not wait for more before it closes."""
        if done_sending:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        while chunk := self.sock.recv(65536):
            self.received += chunk
        head, _, body = self.received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines)
        headers = {name.lower(): value.strip() for name, _, value in fields}
        assert int(headers["content-length"]) == len(body)
        return int(status_line.split()[1]), headers, json.loads(body)

    def closed_silently(self) -> bool:
        """Whether the server closed the connection without sending anything."""
        return self.sock.recv(65536) == b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture
def connections() -> Iterator[list[Connection]]:
    """Connections a test opens, closed after it."""
    opened: list[Connection] = []
    yield opened
    for connection in opened:
        connection.close()


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> LocalGateway:
    return make_gateway(server=FAST)


def _open(port: int, opened: list[Connection]) -> Connection:
    connection = Connection(port)
    opened.append(connection)
    return connection


def _send_endless(connection: Connection, head: bytes, piece: bytes, most: int) -> int:
    """Send ``head``, then ``piece`` after ``piece`` until the server answers or stops reading,
    or ``most`` bytes went; returns how many bytes were sent."""
    connection.send(head)
    sent = len(head)
    while sent < most and not connection.answered() and connection.send(piece):
        sent += len(piece)
    return sent


def _openai_refusal(answer: tuple[int, dict[str, str], Any], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["connection"] == "close"
    assert headers["x-request-id"].startswith("req_")
    assert body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error"


@pytest.fixture(scope="module")
def module_simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, module_simulator: SimulatorServer
) -> Iterator[ServedGateway]:
    gateway = served_gateway(tmp_path_factory.mktemp("edge"), module_simulator.base_url)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


@pytest.mark.slow
def test_endless_header_values_are_refused_and_the_gateway_keeps_serving(
    served: ServedGateway, connections: list[Connection]
) -> None:
    """The reported attack: four connections each sending one endless header value, before
    any authentication, against ``tallygate serve`` with its default limits."""
    assert served.process is not None
    rss_before = _rss_kib(served.process.pid)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Endless: "
    attackers = [_open(served.port, connections) for _ in range(4)]
    most = 16 * 1024 * 1024
    sent = [_send_endless(c, head, b"a" * 16384, most) for c in attackers]
    # Each was cut off near the 64 KiB limit, far from the 16 MiB it would have sent (the
    # rest of what went is what the kernel's buffers took while the answer was on its way).
    assert all(count < most // 4 for count in sent), sent
    for attacker in attackers:
        _openai_refusal(attacker.answer(), 431, "request_header_fields_too_large")
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200
    # Nothing of the refused heads is kept: the process has not grown by their size.
    assert _rss_kib(served.process.pid) - rss_before < 32 * 1024


def test_a_head_over_the_byte_limit_is_refused_on_every_surface(
    make_gateway: GatewayFactory, connections: list[Connection]
) -> None:
    gateway = make_gateway(server={"max_header_bytes": 4096})
    openai, lago = (_open(gateway.server.port, connections) for _ in range(2))
    _send_endless(openai, b"GET /v1/models HTTP/1.1\r\nX-Big: ", b"a" * 1024, 1024 * 1024)
    _openai_refusal(openai.answer(), 431, "request_header_fields_too_large")
    _send_endless(lago, b"GET /api/v1/customers HTTP/1.1\r\nX-Big: ", b"a" * 1024, 1024 * 1024)
    status, _, body = lago.answer()
    assert status == 431
    assert body == {
        "status": 431,
        "error": "Request Header Fields Too Large",
        "code": "request_header_fields_too_large",
    }


def test_endless_trailers_after_a_chunked_body_are_refused(
    make_gateway: GatewayFactory, connections: list[Connection]
) -> None:
    gateway = make_gateway(server={"max_header_bytes": 4096})
    key = gateway.new_key()
    body = b'{"model": "gpt-4o-mini", "messages": []}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        # Chunks of any size pass; after the last one, trailers are held like headers.
        + b"%x\r\n%b\r\n" % (len(body), body)
        + b"2000\r\n"
        + b" " * 0x2000
        + b"\r\n"
        + b"0\r\nX-Endless: "
    )
    connection = _open(gateway.server.port, connections)
    _send_endless(connection, head, b"a" * 1024, 1024 * 1024)
    _openai_refusal(connection.answer(), 431, "request_header_fields_too_large")


def test_too_many_header_lines_are_refused(
    make_gateway: GatewayFactory, connections: list[Connection]
) -> None:
    gateway = make_gateway(server={"max_headers": 20})
    connection = _open(gateway.server.port, connections)
    lines = b"".join(b"X-H%d: v\r\n" % n for n in range(21))
    connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    _openai_refusal(connection.answer(), 431, "request_header_fields_too_large")


def test_a_request_target_over_the_limit_is_refused(
    make_gateway: GatewayFactory, connections: list[Connection]
) -> None:
    gateway = make_gateway(server={"max_request_line_bytes": 1024})
    connection = _open(gateway.server.port, connections)
    _send_endless(connection, b"GET /v1/models?q=", b"a" * 512, 1024 * 1024)
    _openai_refusal(connection.answer(), 414, "uri_too_long")


def test_heads_and_targets_within_the_limits_are_served(
    make_gateway: GatewayFactory, connections: list[Connection]
) -> None:
    gateway = make_gateway(
        server={"max_header_bytes": 4096, "max_headers": 20, "max_request_line_bytes": 1024}
    )
    target = "/healthz?" + "q" * (1024 - len("/healthz?"))
    # With httpx's own five (host, accept, accept-encoding, connection, user-agent): 20.
    headers = {f"x-h{n}": "v" for n in range(15)}
    with httpx.Client(base_url=gateway.url, headers=headers) as client:
        for _ in range(3):  # several heads on one kept-alive connection
            assert client.get(target).status_code == 200


def test_a_head_sent_too_slowly_is_answered_408_and_closed(
    gateway: LocalGateway, connections: list[Connection]
) -> None:
    connection = _open(gateway.server.port, connections)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    # A byte at a time, each within the timeout, never finishing: the whole head is late.
    for byte in range(200):
        if not connection.send(b"X-Slow-%d: v\r\n" % byte if byte else head):
            break
        readable, _, _ = select.select([connection.sock], [], [], 0.1)
        if readable:
            break
    _openai_refusal(connection.answer(done_sending=False), 408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed(
    gateway: LocalGateway, connections: list[Connection]
) -> None:
    connection = _open(gateway.server.port, connections)
    assert connection.closed_silently()


def test_a_body_sent_too_slowly_is_answered_408_and_closed(
    gateway: LocalGateway, connections: list[Connection]
) -> None:
    key = gateway.new_key()
    connection = _open(gateway.server.port, connections)
    connection.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"model": "gpt-4o-mini", '
    )
    _openai_refusal(connection.answer(done_sending=False), 408, "request_timeout")
    # The admin API's bodies are held to the same limit.
    lago = _open(gateway.server.port, connections)
    lago.send(
        b"POST /api/v1/customers HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        + f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n{{".encode()
    )
    status, _, body = lago.answer(done_sending=False)
    assert status == 408
    assert body == {"status": 408, "error": "Request Timeout", "code": "request_timeout"}
