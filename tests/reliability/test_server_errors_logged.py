"""Every 5xx the gateway answers is logged exactly once, with the request id its response
carries, on Litestar's routes and on the proxied endpoints alike; a bug's log record has its
traceback; no key and no body text ever reaches the log."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import httpx
import pytest
from litestar import get

from proxy.app import create_app
from proxy.background import BackgroundServer
from tests.proxy.test_fidelity import mock_settings
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import ADMIN_KEY, MODEL, UPSTREAM_KEY, free_port

SECRET_PROMPT = "SECRET-PROMPT-do-not-log-4f1c"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": SECRET_PROMPT}]}


def _break_table(gateway: LocalGateway, table: str) -> None:
    """Take a table away under the running gateway (a store broken from outside)."""
    conn = sqlite3.connect(gateway.db, timeout=30)
    try:
        conn.execute(f'DROP TABLE "{table}"')
        conn.commit()
    finally:
        conn.close()


def _assert_logged_once(
    caplog: pytest.LogCaptureFixture, response: httpx.Response, *secrets: str
) -> logging.LogRecord:
    """The one record naming the response's request id (its traceback included, if any)."""
    assert response.status_code >= 500, response.text
    request_id = response.headers["x-request-id"]
    texts = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        texts.append((record, text))
        for secret in (SECRET_PROMPT, ADMIN_KEY, UPSTREAM_KEY, *secrets):
            assert secret not in text, record
    naming = [record for record, text in texts if request_id in text]
    assert len(naming) == 1, [text for _, text in texts]
    assert str(response.status_code) in naming[0].getMessage()
    return naming[0]


class _FailingTransport(httpx.AsyncBaseTransport):
    """An upstream seam that fails the way no category covers (a bug, not a network error)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug below the proxied endpoint")


@get(["/api/v1/broken", "/v1/broken"], sync_to_thread=False)
def _broken_route() -> None:
    """A route with a bug, added to the real app."""
    raise LookupError("a bug in a route")


def test_a_bug_is_a_500_logged_once_with_its_traceback_on_every_way_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = mock_settings(tmp_path)
    app = create_app(settings, transport=_FailingTransport())
    app.register(_broken_route)
    with BackgroundServer(app, lifespan="on") as server, httpx.Client(base_url=server.url) as c:
        key = LocalGateway(server, settings).new_key()
        answers = {
            "/api/v1/broken": c.get("/api/v1/broken"),
            "/v1/broken": c.get("/v1/broken"),
            "/v1/chat/completions": c.post(
                "/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
            ),
        }
        for path, response in answers.items():
            assert response.status_code == 500, (path, response.text)
            record = _assert_logged_once(caplog, response, key)
            assert record.exc_info is not None  # the traceback, to find the bug
            assert path in record.getMessage()
            document = response.json()
            if path.startswith("/api/v1"):
                assert document == {
                    "status": 500,
                    "error": "Internal Server Error",
                    "code": "internal_error",
                }
            else:
                assert document["error"]["type"] == "server_error"


def test_a_broken_store_under_a_litestar_route_is_a_logged_5xx_in_the_routes_envelope(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gateway = make_gateway()
    key = gateway.new_key()
    _break_table(gateway, "customers")
    with httpx.Client(base_url=gateway.url) as client:
        caplog.clear()
        lago = client.get("/api/v1/customers", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        record = _assert_logged_once(caplog, lago, key)
        assert lago.json()["status"] == lago.status_code  # Lago's envelope, not Litestar's
        assert lago.status_code == 503 or record.exc_info is not None  # a bug: its traceback
        _break_table(gateway, "api_keys")
        caplog.clear()
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        _assert_logged_once(caplog, models, key)
        assert set(models.json()["error"]) == {"message", "type", "param", "code"}


def test_a_broken_store_under_a_proxied_endpoint_is_a_logged_5xx(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gateway = make_gateway()
    key = gateway.new_key()
    _break_table(gateway, "api_keys")  # the key is not cached yet: looking it up fails
    caplog.clear()
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json=BODY,
        headers={"Authorization": f"Bearer {key}"},
    )
    record = _assert_logged_once(caplog, response, key)
    assert response.status_code == 503 or record.exc_info is not None  # a bug: its traceback
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_an_unreachable_upstream_is_a_logged_502(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gateway = make_gateway(upstream_url=f"http://127.0.0.1:{free_port()}/v1")
    key = gateway.new_key()
    for stream in (False, True):
        caplog.clear()
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={**BODY, "stream": stream},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 502
        record = _assert_logged_once(caplog, response, key)
        assert record.exc_info is None  # a category: one line, no traceback
