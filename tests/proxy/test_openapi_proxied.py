"""The proxied endpoints in the served OpenAPI document, and a real gateway against it.

The four POSTs are served in front of Litestar, so their description is written by hand
(proxy.openapi_proxied); schemathesis checks the gateway's answers against it, with a real key
and the simulator upstream, with generated bodies naming unknown and served models.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config import load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.simulator import SimulatorServer
from proxy.surfaces import SURFACES
from tests.proxy.conftest import Gateway

PATHS = [f"/v1/{surface.endpoint}" for surface in SURFACES]
#: Small enough that a generated body can be refused as too large now and then.
MAX_BODY = 4096
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Examples per operation and run (four operations; the whole module takes about 12 s).
EXAMPLES = 60
#: Statuses the gateway itself answers with the simulator behind it (no `default`).
EXPECTED = {200, 400, 404, 413}


@dataclass(frozen=True)
class Running:
    """A gateway on loopback in front of the simulator, and a real key minted into its store."""

    url: str
    key: str
    simulator: SimulatorServer


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory: Path = tmp_path_factory.mktemp("openapi")
    with SimulatorServer() as simulator:
        demo = demo_settings(
            load_settings(env={}), upstream_url=simulator.base_url, db=directory / "t.db", port=0
        )
        demo = msgspec.structs.replace(
            demo, server=msgspec.structs.replace(demo.server, max_body_bytes=MAX_BODY)
        )
        with BackgroundServer(create_app(demo), lifespan="on", name="gateway") as server:
            key = Gateway(server, demo).new_key()
            yield Running(url=server.url, key=key, simulator=simulator)


@pytest.fixture(scope="module")
def document(running: Running) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{running.url}/schema/openapi.json").json()
    return answer


def test_the_four_proxied_posts_are_documented(document: dict[str, Any]) -> None:
    for surface in SURFACES:
        path = f"/v1/{surface.endpoint}"
        operation = document["paths"][path]["post"]
        assert operation["security"] == [{"api_key": []}], path
        body = operation["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert schema["required"] == ["model"]
        assert schema["properties"]["model"]["type"] == "string"
        assert ("stream" in schema["properties"]) is surface.streams, path
        assert ("stream_options" in schema["properties"]) is surface.streams, path
        assert "additionalProperties" not in schema  # fields it does not read are forwarded
        responses = operation["responses"]
        success = set(responses["200"]["content"])
        expected = (
            {"application/json", "text/event-stream"} if surface.streams else {"application/json"}
        )
        assert success == expected, path
        for status in ("400", "401", "404", "413", "415", "502", "503", "504"):
            envelope = responses[status]["content"]["application/json"]["schema"]
            error = envelope["properties"]["error"]
            assert set(error["required"]) == {"message", "type", "param", "code"}, status
    schemes = document["components"]["securitySchemes"]
    assert schemes["api_key"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A virtual key (tg-...)",
    }
    assert schemes["admin_key"]["scheme"] == "bearer"  # the admin key stays a separate scheme


def test_key_authenticated_gets_carry_the_key_scheme(document: dict[str, Any]) -> None:
    for path in ("/v1/models", "/v1/models/{model_id}", "/v1/usage"):
        operation = document["paths"][path]["get"]
        assert operation["security"] == [{"api_key": []}], path
        assert "401" in operation["responses"], path
    assert "404" in document["paths"]["/v1/models/{model_id}"]["get"]["responses"]


@pytest.fixture(scope="module")
def proxied_schema(running: Running) -> BaseSchema:
    schema = schemathesis.openapi.from_url(f"{running.url}/schema/openapi.json")
    schema.config.update(base_url=running.url)
    return schema.include(path_regex="^(" + "|".join(PATHS) + ")$")


#: A served model and the input the upstream needs, per path (generated bodies lack both).
SERVED: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello there"}],
    },
    "/v1/completions": {"model": "gpt-3.5-turbo", "prompt": "Hello there"},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "Hello there"},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "Hello there"},
}

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


def _shaped(*keys: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``keys`` (the names the estimator looks at), any values."""
    return st.dictionaries(st.sampled_from(keys), _JSON | st.text(max_size=6), max_size=len(keys))


_PART = _shaped("type", "text", "refusal", "image_url") | st.fixed_dictionaries(
    {"type": st.sampled_from(["image_url", "input_image"]), "image_url": _JSON}
)
_TOOLS = _JSON | st.lists(_shaped("type", "function", "name", "description", "parameters"))
#: The fields each surface's fallback estimate reads (proxy.surfaces), with odd values; the
#: upstream ignores what it does not know, so they reach the estimate.
ESTIMATED: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {},
        optional={
            "messages": st.lists(
                _shaped("role", "name", "tool_calls", "function_call")
                | st.fixed_dictionaries({"content": st.text() | st.lists(_PART, max_size=3)}),
                min_size=1,
                max_size=3,
            ),
            "tools": _TOOLS,
            "tool_choice": _JSON,
        },
    ),
    "/v1/completions": st.fixed_dictionaries({}, optional={"prompt": _JSON}),
    "/v1/embeddings": st.fixed_dictionaries({}, optional={"input": _JSON}),
    "/v1/responses": st.fixed_dictionaries(
        {},
        optional={
            "input": _JSON | st.lists(_shaped("type", "role", "content", "output", "name")),
            "instructions": _JSON,
            "tools": _TOOLS,
            "tool_choice": _JSON,
        },
    ),
}


def _conform(
    running: Running,
    schema: BaseSchema,
    extra: dict[str, st.SearchStrategy[dict[str, Any]]],
    examples: int = EXAMPLES,
) -> dict[str, set[int]]:
    """Run every proxied operation against the schema; the statuses seen per path.

    Two of three examples name a served model and carry the upstream's required input (plus
    what ``extra`` draws), so they reach the upstream; the rest mostly stop at the 404.
    """
    auth = {"Authorization": f"Bearer {running.key}"}
    failures: dict[str, str] = {}
    statuses: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.path for operation in operations) == sorted(PATHS)
    for operation in operations:

        @given(
            case=operation.as_strategy(),
            serve=st.sampled_from([False, True, True]),
            served=st.just(SERVED[operation.path]),
            fields=extra.get(operation.path, st.just({})),
        )
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case, serve: bool, served: dict[str, Any], fields: dict[str, Any]) -> None:
            if serve and isinstance(case.body, dict):
                case.body.update(served)
                case.body.update(fields)
            response = case.call_and_validate(headers=auth, checks=CHECKS)
            statuses.setdefault(case.operation.path, set()).add(response.status_code)

        try:
            run()
        except (AssertionError, ExceptionGroup) as exc:  # schemathesis' failures
            failures[operation.label] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    return statuses


def test_proxied_endpoints_conform_to_their_schema(
    running: Running, proxied_schema: BaseSchema
) -> None:
    statuses = _conform(running, proxied_schema, {})
    for path in PATHS:
        # Past auth and routing into the upstream, and refused before it.
        assert {200, 404} <= statuses[path], (path, statuses[path])
        assert statuses[path] <= EXPECTED, (path, statuses[path])


def test_estimated_usage_conforms_whatever_the_body_holds(
    running: Running, proxied_schema: BaseSchema
) -> None:
    # An upstream without usage: every answer goes through the tiktoken fallback, which reads
    # the client's fields the upstream may well have ignored.
    running.simulator.control.set_faults(no_usage=True)
    try:
        statuses = _conform(running, proxied_schema, ESTIMATED, examples=3 * EXAMPLES)
    finally:
        running.simulator.control.reset_faults()
    for path in PATHS:
        assert 200 in statuses[path], (path, statuses[path])
        assert statuses[path] <= EXPECTED, (path, statuses[path])


@pytest.mark.parametrize(
    ("content", "content_type", "authorization", "status"),
    [
        (b"{not json", "application/json", "key", 400),
        (b'["model"]', "application/json", "key", 400),
        (b'{"model": "gpt-4o-mini"}', "text/plain", "key", 415),
        (b'{"model": "' + b"x" * MAX_BODY + b'"}', "application/json", "key", 413),
        (b'{"model": "gpt-4o-mini"}', "application/json", None, 401),
        (b'{"model": "gpt-4o-mini"}', "application/json", "tg-unknown", 401),
    ],
)
def test_refusals_generated_bodies_do_not_reach_are_documented(
    running: Running,
    proxied_schema: BaseSchema,
    content: bytes,
    content_type: str,
    authorization: str | None,
    status: int,
) -> None:
    headers = {"Content-Type": content_type}
    if authorization is not None:
        token = running.key if authorization == "key" else authorization
        headers["Authorization"] = f"Bearer {token}"
    for path in PATHS:
        response = httpx.post(f"{running.url}{path}", content=content, headers=headers)
        assert response.status_code == status, (path, response.text)
        operation = proxied_schema[path]["POST"]
        assert str(status) in operation.definition.raw["responses"], path
        operation.validate_response(response)  # OpenAI's envelope
        assert response.headers["x-request-id"]


def test_other_methods_are_405_naming_post(running: Running) -> None:
    # Not part of the POST operations: what schemathesis' unsupported-method probe expects.
    for path in PATHS:
        response = httpx.get(f"{running.url}{path}")
        assert response.status_code == 405, path
        assert response.headers["allow"] == "POST"
        assert response.json()["error"]["type"] == "invalid_request_error"
