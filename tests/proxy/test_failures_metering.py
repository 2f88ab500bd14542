"""Failures meter exactly what was produced: nothing for refusals, the streamed text for breaks.

- 4xx from the gateway or the upstream (plain or streamed): nothing metered;
- 5xx answers: nothing metered (no tokens were produced);
- a stream that times out, is reset, or carries an error event after some content: the prompt
  estimate plus tiktoken over the text streamed so far, flagged ``usage_source=estimated``;
  the client's stream ends with an error event (the gateway's, for a timeout or a reset);
- a revoked key is refused at once and nothing is forwarded;
- text with special tokens (``<|endoftext|>``) is counted as plain text by the fallback.

Breaks mid-body are raised by an ``httpx.MockTransport`` stream exactly where the network would
raise them (the app's transport seam); refusals come from the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest
from litestar.testing import AsyncTestClient

from config import load_settings
from metering.models import Event
from proxy.app import create_app
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from proxy.upstream import RETRIED_STATUSES
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES, stored_events, usage_of

WORDS = ["Hello", " there", " general", " Kenobi"]
#: The error code that ends the client's stream, per way of breaking.
CODES = {"timeout": "upstream_timeout", "reset": "upstream_stream_interrupted", "error_event": None}


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def chunk(payload: object) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


class Breaking(httpx.AsyncByteStream):
    """Streams ``WORDS`` as chat chunks, then fails the way ``how`` says."""

    def __init__(self, how: str) -> None:
        self.how = how

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for word in WORDS:
            yield chunk({"choices": [{"index": 0, "delta": {"content": word}}]})
        if self.how == "timeout":
            raise httpx.ReadTimeout("read timed out")
        if self.how == "reset":
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")
        # An upstream 5xx after the headers: OpenAI's mid-stream error shape, then EOF.
        yield chunk({"error": {"message": "The server had an error", "type": "server_error"}})


async def events_of(client: AsyncTestClient[Any], customer: str = "acme") -> list[Event]:
    gateway = client.app.state.gateway
    return list(
        await gateway.store.list_events(
            external_subscription_id=f"{customer}:llm_default",
            code="llm_tokens",
            from_ts=None,
            to_ts=gateway.clock(),
        )
    )


async def test_broken_streams_meter_the_text_produced(
    tmp_path: Path, counter: TokenCounter
) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        # The test says how to break through the body's "user" field (forwarded as sent).
        how = msgspec.json.decode(request.content)["user"]
        return httpx.Response(
            200, stream=Breaking(how), headers={"content-type": "text/event-stream"}
        )

    settings = demo_settings(
        load_settings(env={}), upstream_url="http://up.test/v1", db=tmp_path / "b.db", port=0
    )
    app = create_app(settings, transport=httpx.MockTransport(upstream))
    async with AsyncTestClient(app) as client:
        gateway = client.app.state.gateway
        for how in ("timeout", "reset", "error_event"):
            issued = await issue_key(gateway.store, settings, customer=how, now=gateway.clock())
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": MESSAGES, "stream": True, "user": how},
                headers={"Authorization": f"Bearer {issued.secret}"},
            )
            # The client's stream ends after what was produced, with an error event: the
            # upstream's own, or the gateway's for a break.
            assert response.status_code == 200, how
            assert response.text.count('"content"') == len(WORDS), how
            assert response.text.count('"error"') == 1, how
            last = msgspec.json.decode(response.text.strip().rpartition("data: ")[2])
            assert last["error"].get("code") == CODES[how], how
            events = await events_of(client, how)
            tokens = {e.properties["type"]: e.properties["tokens"] for e in events}
            assert tokens == {
                "input": counter.count_chat_prompt(MESSAGES, "gpt-4o"),
                "output": counter.count_completion(["".join(WORDS)], "gpt-4o"),
            }, how
            assert {e.properties["usage_source"] for e in events} == {"estimated"}, how


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_upstream_refusals_meter_nothing_plain_or_streamed(
    gateway: Gateway,
    api_key: str,
    simulator: SimulatorServer,
    status: int,
    error: type[openai.APIStatusError],
) -> None:
    client = gateway.client(api_key)
    # 502/503/504 said "nothing was done": the gateway retries them (upstream retries = 1).
    attempts = 2 if status in RETRIED_STATUSES else 1
    simulator.control.set_faults(status=status, times=2 * attempts)
    with pytest.raises(error) as plain:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert plain.value.status_code == status
    with pytest.raises(error):
        list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert simulator.control.stats()["total_requests"] == 2 * attempts
    assert usage_of(gateway, api_key)["key_usage"]["breakdown"] == []
    assert stored_events(gateway) == []


def test_gateway_refusals_forward_and_meter_nothing(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    client = gateway.client(api_key)
    with pytest.raises(openai.NotFoundError) as unknown:
        list(client.chat.completions.create(model="gpt-99", messages=MESSAGES, stream=True))
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-99")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(
            model="text-embedding-3-small", input="x", extra_body={"stream": True}
        )
    assert simulator.control.stats()["total_requests"] == 0
    assert stored_events(gateway) == []


async def test_a_revoked_key_is_refused_at_once(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return httpx.Response(200, json={"choices": [], "usage": usage})

    settings = demo_settings(
        load_settings(env={}), upstream_url="http://up.test/v1", db=tmp_path / "r.db", port=0
    )
    async with AsyncTestClient(
        create_app(settings, transport=httpx.MockTransport(upstream))
    ) as client:
        gateway = client.app.state.gateway
        issued = await issue_key(gateway.store, settings, customer="acme", now=gateway.clock())
        auth = {"Authorization": f"Bearer {issued.secret}"}
        body = {"model": "gpt-4o", "messages": MESSAGES}
        assert (await client.post("/v1/chat/completions", json=body, headers=auth)).is_success
        await gateway.auth.revoke(issued.record.id, gateway.clock())
        for response in (
            await client.post("/v1/chat/completions", json=body, headers=auth),
            await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=auth),
            await client.get("/v1/usage", headers=auth),
            await client.get("/v1/models", headers=auth),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert len(seen) == 1  # only the call made before the revocation went upstream
        assert len(await events_of(client)) == 2  # and only it is metered


def test_special_tokens_are_counted_as_plain_text_by_the_fallback(
    gateway: Gateway, api_key: str, simulator: SimulatorServer, counter: TokenCounter
) -> None:
    simulator.control.set_faults(no_usage=True)
    messages = [{"role": "user", "content": "stop here <|endoftext|> or <|im_start|> not"}]
    client = gateway.client(api_key)
    reply = client.chat.completions.create(model="gpt-4", messages=messages)  # type: ignore[arg-type]
    rows = {r["type"]: r["tokens"] for r in usage_of(gateway, api_key)["key_usage"]["breakdown"]}
    assert rows == {
        "input": counter.count_chat_prompt(messages, "gpt-4"),
        "output": counter.count_completion([reply.choices[0].message.content or ""], "gpt-4"),
    }
    # Plain text: "<|endoftext|>" is several ordinary tokens, not one special token.
    assert counter.count_text("<|endoftext|>", "gpt-4") > 1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("tools", [5, True, "search"])
def test_a_malformed_field_the_upstream_ignored_is_still_estimated(
    gateway: Gateway,
    api_key: str,
    simulator: SimulatorServer,
    counter: TokenCounter,
    stream: bool,
    tools: object,
) -> None:
    # Found by schemathesis (tests/proxy/test_openapi_proxied.py): `"tools": 5` reached the
    # upstream, which answered without usage, and the estimate raised: a 500 (a cut stream)
    # and the generated tokens went unmetered.
    simulator.control.set_faults(no_usage=True)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "tools": tools, "stream": stream}
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    rows = {r["type"]: r["tokens"] for r in usage_of(gateway, api_key)["key_usage"]["breakdown"]}
    assert rows["input"] == counter.count_chat_prompt(MESSAGES, "gpt-4o-mini")
    assert rows["output"] > 0


@pytest.mark.parametrize(
    ("extra", "appended", "refused"),
    [
        (b' "stream": false', b"}", False),  # plain bodies are forwarded untouched
        (b' "stream": true', b',"stream_options":{"include_usage":true}}', False),
        (b' "stream": true, "stream_options": {"include_obfuscation": false}', b"", True),
    ],
)
def test_a_body_that_must_be_rewritten_but_cannot_be_read_is_a_400(
    gateway: Gateway,
    api_key: str,
    simulator: SimulatorServer,
    extra: bytes,
    appended: bytes,
    refused: bool,
) -> None:
    # Streams get include_usage injected: appended to the client's bytes when the body has no
    # stream_options, merged into them (the body decoded whole) when it has.
    body = (
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],'
        b' "temperature": 1e400,' + extra + b"}"
    )
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    if refused:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_value"
        assert simulator.control.stats()["total_requests"] == 0
        assert stored_events(gateway) == []
        return
    # The upstream decides (the simulator reads 1e400 as a float).
    assert response.status_code == 200
    forwarded = simulator.control.requests()[0]["body"]
    assert forwarded == (body[:-1] + appended).decode()


async def test_an_unexpected_failure_answers_500_in_the_envelope_and_meters_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug below the proxy, not a network error")

    settings = demo_settings(
        load_settings(env={}), upstream_url="http://up.test/v1", db=tmp_path / "u.db", port=0
    )
    app = create_app(settings, transport=httpx.MockTransport(upstream))
    async with AsyncTestClient(app) as client:
        gateway = client.app.state.gateway
        issued = await issue_key(gateway.store, settings, customer="acme", now=gateway.clock())
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {issued.secret}"},
        )
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "server_error"
        assert response.json()["error"]["code"] == "internal_error"
        assert response.headers["x-request-id"].startswith("req_")
        assert await events_of(client) == []
    assert "a bug below the proxy" in caplog.text  # logged with its traceback
