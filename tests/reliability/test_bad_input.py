"""Bad input on the OpenAI surface: the right status in OpenAI's envelope, nothing forwarded
that the gateway can refuse itself, nothing metered, the store untouched."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import MODEL

CAP = 64 * 1024
MESSAGES = b'[{"role": "user", "content": "hi"}]'


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> LocalGateway:
    return make_gateway(server={"max_body_bytes": CAP})


@pytest.fixture
def key(gateway: LocalGateway) -> str:
    return gateway.new_key()


def table_counts(db: Path) -> dict[str, int]:
    """Rows per table: the whole store's state, as far as a refused request could touch it."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608
    finally:
        conn.close()


@pytest.fixture
def untouched(gateway: LocalGateway, key: str, simulator: SimulatorServer) -> Iterator[None]:
    """The test's requests leave the store as it was and produce no usage upstream."""
    before = table_counts(gateway.db)
    simulator.control.reset_stats()
    yield
    assert table_counts(gateway.db) == before
    assert simulator.control.stats()["usage"]["responses"] == 0


def openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


JSON = "application/json"
CASES = [
    # (content, content type, status, code, param)
    (b"{not json", JSON, 400, "invalid_json", None),
    (b"", JSON, 400, "invalid_json", None),
    (b'"just a string"', JSON, 400, "invalid_type", None),
    (b"[1, 2]", JSON, 400, "invalid_type", None),
    (b'{"messages": ' + MESSAGES + b"}", JSON, 400, "missing_required_parameter", "model"),
    (
        b'{"model": "", "messages": ' + MESSAGES + b"}",
        JSON,
        400,
        "missing_required_parameter",
        "model",
    ),
    (b'{"model": 5, "messages": ' + MESSAGES + b"}", JSON, 400, "invalid_type", "model"),
    (b'{"model": null, "messages": []}', JSON, 400, "invalid_type", "model"),
    (b'{"model": "gpt-4o-mini", "stream": "yes"}', JSON, 400, "invalid_type", "stream"),
    (b'{"model": "gpt-4o-mini", "stream_options": 1}', JSON, 400, "invalid_type", "stream_options"),
    (b'{"model": "gpt-4o-mini", "n": "two"}', JSON, 400, "invalid_type", "n"),
    (b'{"model": "nope-1", "messages": ' + MESSAGES + b"}", JSON, 404, "model_not_found", "model"),
    (
        b'{"model": "gpt-4o-mini", "messages": ' + MESSAGES + b"}",
        "text/plain",
        415,
        "unsupported_media_type",
        None,
    ),
    (
        b"model=gpt-4o-mini",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        None,
    ),
]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(("content", "content_type", "status", "code", "param"), CASES)
def test_malformed_requests_are_refused_before_the_upstream(
    gateway: LocalGateway,
    key: str,
    simulator: SimulatorServer,
    content: bytes,
    content_type: str,
    status: int,
    code: str,
    param: str | None,
) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    error = openai_error(response, status)
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error"
    assert simulator.control.stats()["total_requests"] == 0


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("messages", "code"),
    [(b"[]", "empty_array"), (b'"hi"', None), (b"null", None)],
)
def test_bad_messages_are_refused_by_the_upstream_and_meter_nothing(
    gateway: LocalGateway, key: str, simulator: SimulatorServer, messages: bytes, code: str | None
) -> None:
    # The gateway reads only model/stream/n; the messages' shape is the upstream's to judge.
    for stream in (b"false", b"true"):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            content=b'{"model": "gpt-4o-mini", "stream": '
            + stream
            + b', "messages": '
            + messages
            + b"}",
            headers={"Authorization": f"Bearer {key}", "Content-Type": JSON},
        )
        error = openai_error(response, 400)
        assert error["type"] == "invalid_request_error"
        if code is not None:
            assert error["code"] == code


def test_missing_bad_and_revoked_keys_are_401(
    gateway: LocalGateway, key: str, simulator: SimulatorServer
) -> None:
    revoked = gateway.new_key("revoked-customer")
    gateway.revoke(revoked)
    before = table_counts(gateway.db)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    cases = {
        "missing_api_key": [None, "", "Bearer", f"Basic {key}", key],
        "invalid_api_key": [
            "Bearer tg-not-a-real-key",
            "Bearer sk-openai-looking-key",
            f"Bearer {key}x",
            f"Bearer {key[:-1]}",
            f"Bearer {revoked}",
        ],
    }
    for code, headers in cases.items():
        for value in headers:
            sent = {} if value is None else {"Authorization": value}
            for path in ("/v1/chat/completions", "/v1/usage", "/v1/models"):
                method = "POST" if path == "/v1/chat/completions" else "GET"
                response = httpx.request(method, f"{gateway.url}{path}", json=body, headers=sent)
                error = openai_error(response, 401)
                assert error["code"] == code, (value, path)
                assert key not in response.text
    assert simulator.control.stats()["total_requests"] == 0
    assert table_counts(gateway.db) == before


def _raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head)
    return sock


def _read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, bytes]:
    """Status and body of one Content-Length response (``data``: bytes already received)."""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before the answer: {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed inside the body"
        body += piece
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.usefixtures("untouched")
def test_oversized_declared_body_is_refused_before_it_is_sent(
    gateway: LocalGateway, key: str, simulator: SimulatorServer
) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {100 * CAP}\r\n\r\n".encode()
    )
    with _raw_request(gateway.server.port, head) as sock:
        sock.sendall(b'{"model": "gpt-4o-mini", "messages": [')  # and nothing more
        status, answer = _read_response(sock)
    assert status == 413
    assert b'"invalid_request_error"' in answer
    assert simulator.control.stats()["total_requests"] == 0


@pytest.mark.usefixtures("untouched")
def test_oversized_chunked_body_is_refused_once_past_the_cap_without_reading_the_rest(
    gateway: LocalGateway, key: str, simulator: SimulatorServer
) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    piece = b"x" * 8192
    with _raw_request(gateway.server.port, head) as sock:
        sent = 0
        sock.settimeout(0.05)
        answer = b""
        # Sent slowly, a chunk at a time, and never finished: the answer must come anyway.
        while sent < 50 * CAP:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            break
        sock.settimeout(30)
        assert answer, "no answer while the body kept coming"
        status, body = _read_response(sock, answer)
    assert status == 413
    assert b'"invalid_request_error"' in body
    assert CAP < sent <= 4 * CAP  # refused soon after the cap, long before the 50x body ended
    assert simulator.control.stats()["total_requests"] == 0


def test_a_body_at_the_cap_is_served(gateway: LocalGateway, key: str) -> None:
    filler = "x" * (CAP - 200)
    body = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "{filler}"}}]}}'
    assert len(body) <= CAP
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": JSON},
    )
    assert response.status_code == 200
