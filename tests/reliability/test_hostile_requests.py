"""Requests built to break the gateway get a clean 4xx on every route, in that route's envelope:
JSON nested far past any parser's bound, a bearer beyond ASCII, two Authorization headers.
And a client never picks which of the operator's organizations or projects is billed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import ADMIN_KEY, MODEL

#: The reported case: 100,000 levels of arrays.
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> LocalGateway:
    return make_gateway()


@pytest.fixture
def client(gateway: LocalGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


def served_routes(client: httpx.Client) -> list[tuple[str, str]]:
    """(method, path) of every route the gateway documents, path parameters filled in."""
    schema = client.get("/schema/openapi.json").json()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = path
        for name in [p for part in path.split("{")[1:] for p in [part.split("}")[0]]]:
            concrete = concrete.replace(f"{{{name}}}", "x")
        routes.extend((method.upper(), concrete) for method in operations)
    assert len(routes) > 20, routes  # the whole surface, not an empty schema
    return sorted(routes)


def auth_for(path: str, key: str) -> str:
    return ADMIN_KEY if path.startswith("/api/v1") else key


def assert_clean_refusal(response: httpx.Response, path: str) -> None:
    """A 4xx in the route's envelope: Lago's under /api/v1, OpenAI's elsewhere."""
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
    body = response.json()
    if path.startswith("/api/v1"):
        assert body["status"] == response.status_code, body
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert response.headers["x-request-id"]


def test_json_nested_100000_deep_is_a_clean_4xx_on_every_route(
    gateway: LocalGateway, client: httpx.Client, simulator: SimulatorServer
) -> None:
    key = gateway.new_key()
    for method, path in served_routes(client):
        response = client.request(
            method,
            path,
            content=DEEP.encode(),
            headers={
                "Authorization": f"Bearer {auth_for(path, key)}",
                "Content-Type": "application/json",
            },
        )
        if method in ("POST", "PUT"):  # the routes that read a body refuse this one
            assert_clean_refusal(response, path)
        else:
            assert response.status_code < 500, (method, path, response.text[:300])
    assert simulator.control.stats()["total_requests"] == 0


@pytest.mark.parametrize("where", ["message content", "tool parameters", "top level"])
def test_json_nested_deep_inside_a_chat_request_is_a_400(
    gateway: LocalGateway, client: httpx.Client, simulator: SimulatorServer, where: str
) -> None:
    key = gateway.new_key()
    deep: dict[str, str] = {
        "message content": (
            f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": {DEEP}}}]}}'
        ),
        "tool parameters": (
            f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], '
            '"tools": [{"type": "function", "function": {"name": "f", "parameters": '
            f"{DEEP}}}}}]}}"
        ),
        "top level": f'{{"model": "{MODEL}", "messages": {DEEP}}}',
    }
    for stream in (False, True):
        body = deep[where].replace('{"model"', f'{{"stream": {str(stream).lower()}, "model"', 1)
        response = client.post(
            "/v1/chat/completions",
            content=body.encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        assert_clean_refusal(response, "/v1/chat/completions")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"
    assert simulator.control.stats()["total_requests"] == 0


def test_a_bearer_beyond_ascii_is_a_401_on_every_route(
    gateway: LocalGateway, client: httpx.Client
) -> None:
    for method, path in served_routes(client):
        for token in ("clé-admin-é", "tg-ключ", "\xff\xfe"):
            response = client.request(
                method,
                path,
                json={},
                headers={"Authorization": b"Bearer " + token.encode("utf-8")},
            )
            if path.startswith(("/api/v1", "/v1", "/admin/v1")):
                assert response.status_code == 401, (method, path, response.text[:300])
                assert_clean_refusal(response, path)
            else:
                assert response.status_code < 500, (method, path)


def test_two_authorization_headers_are_refused_on_every_route(
    gateway: LocalGateway, client: httpx.Client, simulator: SimulatorServer
) -> None:
    key = gateway.new_key()
    for method, path in served_routes(client):
        # The good key first and last: neither way in may pick one of the two.
        for pair in ((key, "tg-other"), ("tg-other", key), (ADMIN_KEY, key), (key, ADMIN_KEY)):
            response = client.request(
                method,
                path,
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                headers=[("Authorization", f"Bearer {token}") for token in pair],
            )
            assert response.status_code == 400, (method, path, pair, response.text[:300])
            assert_clean_refusal(response, path)
    assert simulator.control.stats()["total_requests"] == 0


def _forwarded_headers(simulator: SimulatorServer) -> list[dict[str, Any]]:
    return [
        {name.lower(): value for name, value in request["headers"].items()}
        for request in simulator.control.requests()
    ]


def _chat_with_org_headers(gateway: LocalGateway) -> None:
    key = gateway.new_key()
    for stream in (False, True):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "x"}]},
            headers={
                "Authorization": f"Bearer {key}",
                "OpenAI-Organization": "org-chosen-by-client",
                "OpenAI-Project": "proj_chosen_by_client",
            },
        )
        assert response.status_code == 200


def test_a_client_does_not_choose_the_billed_organization_or_project(
    gateway: LocalGateway, simulator: SimulatorServer
) -> None:
    simulator.control.clear_requests()
    _chat_with_org_headers(gateway)
    forwarded = _forwarded_headers(simulator)
    assert len(forwarded) == 2
    for headers in forwarded:
        assert "openai-organization" not in headers
        assert "openai-project" not in headers


def test_an_upstream_bills_the_organization_and_project_its_config_names(
    make_gateway: GatewayFactory, simulator: SimulatorServer
) -> None:
    gateway = make_gateway(upstream={"organization": "org-operator", "project": "proj_operator"})
    simulator.control.clear_requests()
    _chat_with_org_headers(gateway)
    forwarded = _forwarded_headers(simulator)
    assert len(forwarded) == 2
    for headers in forwarded:
        assert headers["openai-organization"] == "org-operator"
        assert headers["openai-project"] == "proj_operator"
