"""Proxied requests answered by the server protocol itself (no ASGI), read off the wire.

A real gateway on loopback (uvicorn with ``proxy.http_protocol``), spoken to over a raw socket
so that what the protocol writes (framing, ``connection: close``, ``100 Continue``, pipelined
answers in order) is seen byte for byte, as an HTTP client would receive it.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httptools
import httpx

from config import Settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.simulator import SimulatorServer
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES, stored_events


class _Answer:
    """One parsed HTTP response."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete = False

    def json(self) -> Any:
        return json.loads(self.body)


class _Reader:
    """Reads responses off a socket with httptools (several per connection)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.answers: list[_Answer] = []
        self.interim: list[int] = []
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.answers.append(_Answer())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answers[-1].headers[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self.answers[-1].status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.answers[-1].body += body

    def on_message_complete(self) -> None:
        answer = self.answers[-1]
        if 100 <= answer.status < 200:
            self.interim.append(self.answers.pop().status)
        else:
            answer.complete = True

    def read(self, count: int) -> list[_Answer]:
        """Read until ``count`` final answers are complete (or the server closes)."""
        while sum(a.complete for a in self.answers) < count:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                break
            self._parser.feed_data(data)
        return self.answers

    def at_eof(self) -> bool:
        """Whether the server has closed the connection (after what was read)."""
        self.sock.settimeout(5)
        return self.sock.recv(1) == b""


def _post(key: str, body: bytes, *extra: str, path: str = "/v1/chat/completions") -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: gateway",
        f"Authorization: Bearer {key}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chat(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, **fields}).encode()


def _connect(gateway: Gateway) -> socket.socket:
    server = gateway.server
    return socket.create_connection((server.host, server.port), timeout=10)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    gateway: Gateway, api_key: str
) -> None:
    with _connect(gateway) as sock:
        sock.sendall(
            _post(api_key, _chat()) + _post("tg-not-a-key", _chat()) + _post(api_key, b"{not json")
        )
        answers = _Reader(sock).read(3)
    assert [a.status for a in answers] == [200, 401, 400]
    assert answers[0].json()["object"] == "chat.completion"
    assert answers[1].json()["error"]["code"] == "invalid_api_key"
    assert answers[2].json()["error"]["type"] == "invalid_request_error"
    for answer in answers:
        assert int(answer.headers["content-length"]) == len(answer.body)
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["x-request-id"]
        assert "date" in answer.headers
    assert len(stored_events(gateway)) == 2  # input and output of the one good request


def test_connection_close_is_honoured_after_the_answer(gateway: Gateway, api_key: str) -> None:
    with _connect(gateway) as sock:
        sock.sendall(_post(api_key, _chat(), "Connection: close"))
        reader = _Reader(sock)
        (answer,) = reader.read(1)
        assert answer.status == 200
        assert answer.headers["connection"] == "close"
        assert reader.at_eof()


def test_expect_100_continue_gets_its_interim_answer_once_the_key_is_good(
    gateway: Gateway, api_key: str
) -> None:
    body = _chat()
    with _connect(gateway) as sock:
        head, _, _ = _post(api_key, body, "Expect: 100-continue").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        # The server asks for the body only after the key and content type passed.
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (answer,) = _Reader(sock).read(1)
    assert answer.status == 200
    assert answer.json()["usage"]["total_tokens"] > 0


def test_a_refused_key_with_expect_100_gets_no_interim_answer(gateway: Gateway) -> None:
    with _connect(gateway) as sock:
        head, _, _ = _post("tg-not-a-key", _chat(), "Expect: 100-continue").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        reader = _Reader(sock)
        (answer,) = reader.read(1)
    assert reader.interim == []
    assert answer.status == 401


def test_a_chunked_request_body_is_read_whole(gateway: Gateway, api_key: str) -> None:
    body = _chat()
    head, _, _ = _post(api_key, body).partition(b"\r\n\r\n")
    head = head.replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    with _connect(gateway) as sock:
        sock.sendall(head + b"\r\n\r\n" + chunks + b"0\r\n\r\n")
        (answer,) = _Reader(sock).read(1)
    assert answer.status == 200
    assert answer.json()["object"] == "chat.completion"


def test_a_stream_is_chunked_and_the_connection_stays_usable(
    gateway: Gateway, api_key: str
) -> None:
    stream = _chat(stream=True, stream_options={"include_usage": True})
    with _connect(gateway) as sock:
        sock.sendall(_post(api_key, stream) + _post(api_key, _chat()))
        answers = _Reader(sock).read(2)
    first, second = answers
    assert first.status == 200
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.headers["content-type"].startswith("text/event-stream")
    events = [line for line in first.body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["usage"]["total_tokens"] > 0
    assert second.status == 200
    assert second.json()["object"] == "chat.completion"


def test_other_methods_on_a_proxied_path_still_get_405(gateway: Gateway, api_key: str) -> None:
    with _connect(gateway) as sock:
        sock.sendall(
            f"GET /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {api_key}\r\n\r\n".encode()
        )
        (answer,) = _Reader(sock).read(1)
    assert answer.status == 405
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_an_app_whose_start_up_never_ran_answers_500_instead_of_hanging(
    settings: Settings,
) -> None:
    # No lifespan: the app has no gateway state. The direct path's failure happens inside the
    # request's task, so the client gets uvicorn's plain 500 and a closed connection.
    with BackgroundServer(create_app(settings), lifespan="off") as server:
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"Authorization": "Bearer tg-whatever"},
            timeout=5,
        )
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["connection"] == "close"


def test_a_stream_whose_client_left_before_the_upstream_answered_is_still_metered(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    # The upstream waits before its headers; the client has hung up by then. The relay must
    # still run (cancelled at once) so that what the upstream generates is metered.
    simulator.control.set_faults(delay_ms=1000)
    asked = len(simulator.control.requests())
    with _connect(gateway) as sock:
        sock.sendall(_post(api_key, _chat(stream=True)))
        deadline = time.monotonic() + 5
        while len(simulator.control.requests()) == asked and time.monotonic() < deadline:
            time.sleep(0.01)  # until the request is upstream (its answer not begun)
    deadline = time.monotonic() + 10
    types: set[str] = set()
    while time.monotonic() < deadline and "output" not in types:
        time.sleep(0.1)
        types = {event.properties["type"] for event in stored_events(gateway)}
    assert types == {"input", "output"}


def test_a_long_stream_to_a_client_that_reads_late_arrives_whole(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    # About 9 MB of events against a client that reads nothing for a while: the gateway's
    # socket buffer fills, the relay waits for it to drain (flow control), and nothing is lost.
    chunks = 50_000
    simulator.control.set_faults(chunks=chunks)
    stream = _chat(stream=True, stream_options={"include_usage": True})
    with _connect(gateway) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(_post(api_key, stream))
        time.sleep(1.0)
        (answer,) = _Reader(sock).read(1)
    assert answer.status == 200
    events = [line for line in answer.body.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    documents = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    content = [d for d in documents if d["choices"] and d["choices"][0]["delta"].get("content")]
    assert len(content) == chunks
    assert len(answer.body) > 8_000_000
    assert documents[-1]["usage"]["completion_tokens"] == chunks
    output = [e for e in stored_events(gateway) if e.properties["type"] == "output"]
    assert [e.properties["tokens"] for e in output] == [chunks]
