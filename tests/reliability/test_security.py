"""Secrets stay where they belong: keys hashed at rest and shown once, no key in a log line, the
upstream's key never seen by a client, the client's never by the upstream; hop-by-hop headers
dropped; the upstream chosen by configuration only; each key sees its own usage only."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.simulator import SimulatorServer
from proxy.simulator.config import SimulatorConfig
from tests.reliability.support import (
    ADMIN_KEY,
    MODEL,
    TALLYGATE,
    UPSTREAM_KEY,
    ServedGateway,
    child_env,
    served_gateway,
)

pytestmark = pytest.mark.slow

BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
STREAM_BODY = {**BODY, "stream": True}


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(api_key=UPSTREAM_KEY)) as sim:
        yield sim


@pytest.fixture(scope="module")
def evil() -> Iterator[SimulatorServer]:
    """Where a request would go if it could choose its upstream."""
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorServer
) -> Iterator[ServedGateway]:
    gateway = served_gateway(tmp_path_factory.mktemp("security"), simulator.base_url)
    gateway.create_key("alice")
    gateway.create_key("bob")
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_only_as_hashes_and_shown_once(served: ServedGateway) -> None:
    alice = served.keys[0]
    files = [p for p in served.db.parent.iterdir() if p.name.startswith("gateway.db")]
    stored = b"".join(p.read_bytes() for p in files)  # the database, its WAL and shm
    for key in served.keys:
        assert key.encode() not in stored
        assert key[3:].encode() not in stored  # not even without its tg- prefix
        assert hashlib.sha256(key.encode()).hexdigest().encode() in stored
    listed = subprocess.run(
        [TALLYGATE, "--config", str(served.config), "keys", "list"],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
    ).stdout
    assert alice not in listed
    assert alice[:10] in listed  # the display prefix identifies it


def test_keys_are_matched_whole(served: ServedGateway, simulator: SimulatorServer) -> None:
    alice = served.keys[0]
    before = simulator.control.stats()["total_requests"]
    # Lookups go by the sha256 of the whole presented key: a near miss is simply unknown.
    for near in (alice[:-1], alice + "A", alice[:-1] + ("A" if alice[-1] != "A" else "B")):
        response = httpx.post(f"{served.url}/v1/chat/completions", json=BODY, headers=auth(near))
        assert response.status_code == 401
    assert simulator.control.stats()["total_requests"] == before


def test_the_upstream_gets_its_own_key_never_the_clients_nor_hop_by_hop_headers(
    served: ServedGateway, simulator: SimulatorServer
) -> None:
    alice = served.keys[0]
    simulator.control.clear_requests()
    hop = {
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Trailer",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Proxy-Connection": "keep-alive",
        "Cookie": "session=secret",
        "X-Api-Key": alice,
        "Api-Key": alice,
        "X-Forwarded-For": "10.0.0.1",
    }
    for body in (BODY, STREAM_BODY):
        response = httpx.post(
            f"{served.url}/v1/chat/completions", json=body, headers={**auth(alice), **hop}
        )
        assert response.status_code == 200
    forwarded = simulator.control.requests()
    assert len(forwarded) == 2
    for request in forwarded:
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert alice not in str(request)
        for name in hop:
            if name.lower() != "connection":
                assert name.lower() not in headers, name
        assert "x-hop-secret" not in headers.get("connection", "").lower()


def test_the_upstream_key_never_reaches_a_client(
    served: ServedGateway, simulator: SimulatorServer
) -> None:
    alice = served.keys[0]
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=served.url, headers=auth(alice), timeout=30) as client:
        answers.append(client.post("/v1/chat/completions", json=BODY))
        answers.append(client.post("/v1/chat/completions", json=STREAM_BODY))
        answers.append(client.get("/v1/models"))
        answers.append(client.get("/v1/usage"))
        for status in (400, 401, 403, 429, 500, 503):
            simulator.control.set_faults(status=status, times=3)
            answers.append(client.post("/v1/chat/completions", json=BODY))
            answers.append(client.post("/v1/chat/completions", json=STREAM_BODY))
        simulator.control.reset_faults()
    for answer in answers:
        shown = answer.text + str(answer.headers)
        assert UPSTREAM_KEY not in shown
        assert UPSTREAM_KEY[:12] not in shown
        assert ADMIN_KEY not in shown


def test_an_upstream_refusing_the_gateway_key_is_the_gateways_502(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    # A gateway configured with a wrong upstream key (its variable holds another value).
    gateway = served_gateway(
        tmp_path, simulator.base_url, upstream={"api_key_env": "WRONG_UPSTREAM_KEY"}
    )
    key = gateway.create_key()
    gateway.start()
    try:
        for body in (BODY, STREAM_BODY):
            response = httpx.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=auth(key)
            )
            # Not the upstream's 401: the client's key was fine, the gateway's was not.
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "upstream_auth_failed"
    finally:
        gateway.stop()
    assert "refused the gateway's API key" in gateway.log()


def test_the_upstream_url_never_comes_from_the_request(
    served: ServedGateway, simulator: SimulatorServer, evil: SimulatorServer
) -> None:
    alice = served.keys[0]
    evil_host = f"127.0.0.1:{evil.port}"
    before = simulator.control.stats()["total_requests"]
    tricks = {
        "Host": evil_host,
        "X-Forwarded-Host": evil_host,
        "X-Forwarded-Proto": "http",
        "X-Original-URL": f"{evil.base_url}/chat/completions",
        "X-Upstream-Url": evil.base_url,
        "OpenAI-Base-URL": evil.base_url,
        "Forwarded": f"host={evil_host}",
    }
    body = {**BODY, "base_url": evil.base_url, "api_base": evil.base_url, "url": evil.base_url}
    response = httpx.post(
        f"{served.url}/v1/chat/completions", json=body, headers={**auth(alice), **tricks}
    )
    assert response.status_code == 200
    # An absolute-form request target naming the other server.
    raw = (
        f"POST {evil.base_url}/chat/completions HTTP/1.1\r\nHost: {evil_host}\r\n"
        f"Authorization: Bearer {alice}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(httpx.Request('POST', '/', json=BODY).content)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + httpx.Request("POST", "/", json=BODY).content
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    # Depending on uvicorn's HTTP parser the absolute target is taken as its path (served
    # by the configured upstream) or as an unknown path (404); never as a place to go.
    served_it = answer.startswith(b"HTTP/1.1 200 ")
    assert served_it or answer.startswith(b"HTTP/1.1 404 ")
    assert evil.control.stats()["total_requests"] == 0
    assert simulator.control.stats()["total_requests"] == before + 1 + served_it


def test_no_key_in_any_log_line(served: ServedGateway) -> None:
    alice, bob = served.keys
    wrong_admin = "admin-WRONG-" + ADMIN_KEY
    foreign = "sk-proj-FOREIGNSECRET0123456789abcdef"
    with httpx.Client(base_url=served.url, timeout=30) as client:
        client.post("/v1/chat/completions", json=BODY, headers=auth(alice))
        client.post("/v1/chat/completions", json=STREAM_BODY, headers=auth(bob))
        client.post("/v1/chat/completions", json=BODY, headers=auth(alice + "x"))
        client.post("/v1/chat/completions", json=BODY, headers=auth(foreign))
        client.get("/api/v1/customers", headers=auth(wrong_admin))
        client.get("/api/v1/customers", headers=auth(ADMIN_KEY))
        client.get("/api/v1/customers", headers=auth(alice))
    log = served.log()
    # Refusals are logged by display prefix; a key that is not tallygate's is not logged.
    assert f"refused an unknown key {alice[:10]}..." in log
    for secret in (alice, bob, alice + "x", foreign, ADMIN_KEY, wrong_admin, UPSTREAM_KEY):
        assert secret not in log
        assert secret[10:] not in log


def test_a_revoked_key_is_logged_by_id_and_prefix(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    key = gateway.create_key()
    gateway.start()
    try:
        assert httpx.get(f"{gateway.url}/v1/models", headers=auth(key)).status_code == 200
        listed = subprocess.run(
            [TALLYGATE, "--config", str(gateway.config), "keys", "list"],
            capture_output=True,
            text=True,
            env=child_env(),
            check=True,
        ).stdout
        key_id = next(line.split()[0] for line in listed.splitlines() if line.startswith("key_"))
        subprocess.run(
            [TALLYGATE, "--config", str(gateway.config), "keys", "revoke", key_id],
            capture_output=True,
            env=child_env(),
            check=True,
        )
        response = httpx.get(f"{gateway.url}/v1/models", headers=auth(key))
        while response.status_code == 200:  # the key cache re-reads within 5 s
            response = httpx.get(f"{gateway.url}/v1/models", headers=auth(key))
        assert response.status_code == 401
    finally:
        gateway.stop()
    log = gateway.log()
    assert f"refused revoked key {key_id} ({key[:10]})" in log
    assert key not in log


def test_admin_api_refuses_client_keys(served: ServedGateway) -> None:
    for key in served.keys:
        response = httpx.get(f"{served.url}/api/v1/customers", headers=auth(key))
        assert response.status_code == 401
        response = httpx.get(
            f"{served.url}/api/v1/customers/alice/current_usage",
            params={"external_subscription_id": "alice:llm_default"},
            headers=auth(key),
        )
        assert response.status_code == 401


def test_a_key_reads_only_its_own_usage(served: ServedGateway) -> None:
    alice, bob = served.keys
    for _ in range(2):
        httpx.post(f"{served.url}/v1/chat/completions", json=BODY, headers=auth(bob))

    def usage(key: str) -> dict[str, object]:
        response = httpx.get(f"{served.url}/v1/usage", headers=auth(key))
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body

    mine = usage(alice)
    assert mine["key"]["external_customer_id"] == "alice"  # type: ignore[index]
    # Query parameters naming someone else are refused or ignored, never obeyed.
    for params in (
        {"external_subscription_id": "bob:llm_default"},
        {"external_customer_id": "bob"},
        {"key_id": str(usage(bob)["key"]["id"])},  # type: ignore[index]
    ):
        response = httpx.get(f"{served.url}/v1/usage", params=params, headers=auth(alice))
        assert response.status_code in (200, 400)
        assert "bob" not in response.text.replace("bob:llm_default", "")
    bobs = usage(bob)
    assert bobs["customer_usage"] != mine["customer_usage"]
    assert "bob" not in str(mine)
    assert "alice" not in str(bobs)
