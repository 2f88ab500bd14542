"""The admin API against its own served OpenAPI schema (schemathesis, a bounded number of
examples per operation): no 5xx, documented statuses and content types, bodies that match the
documented shapes; and explicit bad input (unknown fields, wrong types) with every issue listed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema, Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from config import load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.simulator import SimulatorServer
from tests.reliability.support import ADMIN_KEY, UPSTREAM_KEY, write_config

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One gateway for the whole module: the examples accumulate in its store."""
    directory: Path = tmp_path_factory.mktemp("schema")
    with SimulatorServer() as simulator:
        config = write_config(directory, simulator.base_url, port=0)
        env = {"SIM_UPSTREAM_KEY": UPSTREAM_KEY, "TALLYGATE_ADMIN_KEY": ADMIN_KEY}
        app = create_app(load_settings(config, env=env))
        with BackgroundServer(app, lifespan="on", name="gateway") as server:
            yield server.url


@pytest.fixture(scope="module")
def admin_schema(admin_url: str) -> BaseSchema:
    schema = schemathesis.openapi.from_url(f"{admin_url}/schema/openapi.json")
    schema.config.update(base_url=admin_url)
    return schema.include(path_regex=r"^/api/v1/")


#: Examples per operation: ~30 operations, so about 450 requests in all.
EXAMPLES = 15


def test_admin_api_conforms_to_its_schema(admin_schema: BaseSchema) -> None:
    # Each operation is its own hypothesis run; failures are collected so one run shows all.
    failures: dict[str, str] = {}
    statuses: dict[str, set[int]] = {}
    operations = [result.ok() for result in admin_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            response = case.call_and_validate(headers=AUTH, checks=CHECKS)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)

        try:
            run()
        except (AssertionError, ExceptionGroup) as exc:  # schemathesis' failures
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    # The examples got past auth and parsing into the handlers' own decisions.
    assert 200 in statuses["GET /api/v1/customers"]
    assert 422 in statuses["POST /api/v1/customers"]
    assert 422 in statuses["POST /api/v1/billable_metrics"]


def test_every_admin_operation_is_documented_with_its_body_and_auth(admin_url: str) -> None:
    document = httpx.get(f"{admin_url}/schema/openapi.json").json()
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    }
    assert len(operations) >= 20
    for (method, path), operation in operations.items():
        assert operation["security"] == [{"admin_key": []}], path
        assert {"200", "401", "422"} <= set(operation["responses"]), path
        if method in ("post", "put"):
            assert operation["requestBody"]["required"] is True, path
    assert document["components"]["securitySchemes"]["admin_key"]["scheme"] == "bearer"


def test_admin_api_refuses_without_the_admin_key(admin_url: str) -> None:
    document = httpx.get(f"{admin_url}/schema/openapi.json").json()
    for path, item in document["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in item:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_KEY}):
                response = httpx.request(method, f"{admin_url}{concrete}", headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.json() == {"status": 401, "error": "Unauthorized"}


@pytest.mark.parametrize(
    ("path", "body", "issues"),
    [
        (
            "/api/v1/customers",
            {"customer": {"external_id": 5, "currency": "usd", "timezone": 3, "email": []}},
            {"external_id", "currency", "timezone", "email"},
        ),
        (
            "/api/v1/billable_metrics",
            {"billable_metric": {"name": 1, "code": "", "aggregation_type": "avg_agg"}},
            {"name", "code", "aggregation_type"},
        ),
        (
            "/api/v1/subscriptions",
            {"subscription": {"external_customer_id": [], "plan_code": None, "external_id": {}}},
            {"external_customer_id", "plan_code", "external_id"},
        ),
        (
            "/api/v1/events",
            # Lago takes numbers for ids (as text) and events for unknown subscriptions.
            {
                "event": {
                    "transaction_id": [],
                    "external_subscription_id": {},
                    "code": None,
                    "timestamp": "yesterday",
                    "properties": 5,
                }
            },
            {"transaction_id", "external_subscription_id", "code", "timestamp", "properties"},
        ),
    ],
)
def test_wrong_types_are_422_with_every_issue_listed(
    admin_url: str, path: str, body: dict[str, object], issues: set[str]
) -> None:
    response = httpx.post(f"{admin_url}{path}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["status"] == 422
    assert answer["error"] == "Unprocessable Entity"
    assert answer["code"] == "validation_errors"
    assert issues <= set(answer["error_details"]), answer


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/customers", {"customer": {"external_id": "c1", "shoe_size": 44}}),
        (
            "/api/v1/billable_metrics",
            {
                "billable_metric": {
                    "name": "m",
                    "code": "m_unknown_field",
                    "aggregation_type": "count_agg",
                    "colour": "red",
                }
            },
        ),
    ],
)
def test_unknown_fields_are_422_and_named(
    admin_url: str, path: str, body: dict[str, object]
) -> None:
    response = httpx.post(f"{admin_url}{path}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    details = response.json()["error_details"]
    unknown = {"shoe_size", "colour"} & set(details)
    assert unknown, details
    assert all(details[name] == ["unknown_field"] for name in unknown)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"customer": []}', b'{"customer": {}}', b'{"other": {"a": 1}}', b""],
)
def test_malformed_admin_bodies_are_lago_400(admin_url: str, body: bytes) -> None:
    response = httpx.post(
        f"{admin_url}/api/v1/customers",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "BadRequest: param is missing or the value is empty or invalid: customer",
    }
