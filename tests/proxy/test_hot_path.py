"""The proxied endpoints, served in front of Litestar (proxy.hot_path): what a client sees
around the forwarding itself, through a real gateway on loopback."""

from __future__ import annotations

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.proxy.conftest import Gateway

PROXIED = ["chat/completions", "completions", "embeddings", "responses"]


@pytest.mark.parametrize("endpoint", PROXIED)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_in_openai_envelope(
    gateway: Gateway, api_key: str, simulator: SimulatorServer, endpoint: str, method: str
) -> None:
    response = httpx.request(
        method, f"{gateway.base_url}/{endpoint}", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.json() == {
        "error": {
            "message": "Method Not Allowed",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert simulator.control.stats()["total_requests"] == 0


def test_a_trailing_slash_is_the_same_endpoint(gateway: Gateway, api_key: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {api_key}"}
    plain = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=auth)
    slash = httpx.post(f"{gateway.base_url}/chat/completions/", json=body, headers=auth)
    assert plain.status_code == slash.status_code == 200
    assert plain.json()["choices"] == slash.json()["choices"]
    assert plain.headers["x-request-id"] != slash.headers["x-request-id"]


def test_every_answer_has_its_own_request_id_and_the_upstreams_alongside(
    gateway: Gateway, api_key: str
) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=auth)
    refused = httpx.post(
        f"{gateway.base_url}/chat/completions", json={"model": "nope"}, headers=auth
    )
    unauthorized = httpx.post(f"{gateway.base_url}/chat/completions", json=body)
    ids = {r.headers["x-request-id"] for r in (ok, refused, unauthorized)}
    assert len(ids) == 3
    assert all(i.startswith("req_") for i in ids)
    assert ok.headers["x-upstream-request-id"] not in ids
    assert ok.headers["content-length"] == str(len(ok.content))
    assert (refused.status_code, unauthorized.status_code) == (404, 401)
