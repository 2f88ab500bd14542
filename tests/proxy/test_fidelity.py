"""What the gateway passes on and what it records beside each request.

- every response carries tallygate's ``x-request-id``; upstream ids, ``openai-*`` and rate-limit
  headers come back as sent, other upstream headers do not;
- the client's body goes upstream byte for byte unless a field must change, and then only that
  field changes;
- the upstream's usage object is stored verbatim with the request (``usage_raw``);
- a Responses estimate that cannot see server-side history is marked ``lower_bound``;
- a client that disconnects stops the upstream call, and what was generated is metered.

Upstreams here are the simulator on loopback, or an ``httpx.MockTransport`` (the app's
transport seam) where a test needs headers or stream behaviour the simulator has no switch for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from config import Settings, load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES, stored_events, usage_of

Handler = Callable[[httpx.Request], Any]


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    """One tokenizer for the module (loading the rank files is the slow part)."""
    return TokenCounter()


def mock_settings(tmp_path: Path) -> Settings:
    return demo_settings(
        load_settings(env={}), upstream_url="http://upstream.test/v1", db=tmp_path / "f.db", port=0
    )


async def mint(client: AsyncTestClient[Any], settings: Settings) -> str:
    gateway = client.app.state.gateway
    issued = await issue_key(gateway.store, settings, customer="acme", now=gateway.clock())
    return issued.secret


def sse(payload: object) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def content_chunk(text: str) -> bytes:
    return sse(
        {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    )


class Chunks(httpx.AsyncByteStream):
    """An upstream body that arrives in pieces, as from the network (not pre-read)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


# -- request ids ---------------------------------------------------------------------------------


def test_every_response_has_a_request_id(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    root, base = gateway.server.url, gateway.base_url
    chat = {"model": "gpt-4o", "messages": MESSAGES}
    with httpx.Client(timeout=10) as http:
        responses = {
            "chat": http.post(
                f"{base}/chat/completions",
                json={"model": "gpt-4o", "messages": MESSAGES},
                headers=auth,
            ),
            "stream": http.post(
                f"{base}/chat/completions",
                json={"model": "gpt-4o", "messages": MESSAGES, "stream": True},
                headers=auth,
            ),
            "usage": http.get(f"{base}/usage", headers=auth),
            "series": http.get(f"{base}/usage?from=2026-01-01", headers=auth),
            "bad series": http.get(f"{base}/usage?window=week", headers=auth),
            "models": http.get(f"{base}/models", headers=auth),
            "model": http.get(f"{base}/models/gpt-4o", headers=auth),
            "unknown model": http.post(
                f"{base}/chat/completions",
                json={"model": "gpt-99", "messages": MESSAGES},
                headers=auth,
            ),
            "no key": http.get(f"{base}/models"),
            "unknown route": http.get(f"{base}/nothing", headers=auth),
            "health": http.get(f"{root}/healthz"),
            "admin": http.get(f"{root}/api/v1/customers"),
        }
        # Two: the gateway retries a 503 once (upstream retries = 1), then passes it through.
        simulator.control.set_faults(status=503, times=2)
        responses["upstream 503"] = http.post(f"{base}/chat/completions", json=chat, headers=auth)
    ids = {name: r.headers.get("x-request-id") for name, r in responses.items()}
    assert all(value and value.startswith("req_") for value in ids.values()), ids
    assert len(set(ids.values())) == len(ids)  # one id per response
    # A proxied call's id is the one its usage events derive from.
    transactions = {e.transaction_id.rsplit(":", 1)[0] for e in stored_events(gateway)}
    assert transactions == {ids["chat"], ids["stream"]}
    assert responses["upstream 503"].status_code == 503
    assert responses["upstream 503"].headers["x-upstream-request-id"].startswith("req_sim")


# -- headers and bytes, at the httpx boundary ----------------------------------------------------

Mocked = tuple[AsyncTestClient[Any], str, list[httpx.Request]]

UPSTREAM_HEADERS = {
    "x-request-id": "req_upstream_42",
    "openai-organization": "org-test",
    "openai-processing-ms": "12",
    "openai-version": "2020-10-01",
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "2ms",
    "set-cookie": "__cf_bm=secret",
    "server": "upstream-server",
    "cf-ray": "abc",
}
CHAT_REPLY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 3, "audio_tokens": 0, "future_field": 9},
        "completion_tokens_details": {"reasoning_tokens": 4, "rejected_prediction_tokens": 1},
    },
}


@pytest.fixture
async def mocked(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncTestClient[Any], str, list[httpx.Request]]]:
    """The app in front of a mock upstream that records requests and answers CHAT_REPLY."""
    seen: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = msgspec.json.encode(CHAT_REPLY) + b"\n"
        return httpx.Response(
            200, content=body, headers={**UPSTREAM_HEADERS, "content-type": "application/json"}
        )

    settings = mock_settings(tmp_path)
    app = create_app(settings, transport=httpx.MockTransport(upstream))
    async with AsyncTestClient(app) as client:
        yield client, await mint(client, settings), seen


async def test_upstream_headers_and_body_come_back_as_sent(mocked: Mocked) -> None:
    client, key, _ = mocked
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.content == msgspec.json.encode(CHAT_REPLY) + b"\n"  # the upstream's bytes
    headers = response.headers
    for name, value in UPSTREAM_HEADERS.items():
        if name.startswith(("openai-", "x-ratelimit-")):
            assert headers[name] == value
    assert headers["x-upstream-request-id"] == "req_upstream_42"
    assert headers["x-request-id"].startswith("req_")
    for private in ("set-cookie", "cf-ray"):
        assert private not in headers
    assert headers.get("server") != "upstream-server"


async def test_body_is_forwarded_byte_for_byte(mocked: Mocked) -> None:
    client, key, seen = mocked
    # Odd spacing, escapes, key order, big and precise numbers, unknown fields: all kept.
    raw = (
        b'{ "messages" : [{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00 <|endoftext|>"}],\n'
        b'  "model":"gpt-4o", "temperature": 0.1000000000000000055511151231257827,'
        b' "seed": 123456789012345678901234567890, "x_vendor": {"a": [1, 2.50]} }'
    )
    response = await client.post(
        "/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert seen[-1].content == raw
    forwarded = {name.lower() for name in seen[-1].headers}
    assert "authorization" not in forwarded  # the demo upstream has no key; the client's never goes


async def test_stream_injection_changes_only_stream_options(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        body = Chunks(content_chunk("hi"), b"data: [DONE]\n\n")
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    settings = mock_settings(tmp_path)
    async with AsyncTestClient(
        create_app(settings, transport=httpx.MockTransport(upstream))
    ) as client:
        key = await mint(client, settings)
        sent = {
            "model": "gpt-4o",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": False, "include_obfuscation": False},
            "x_vendor": [1, {"b": None}],
        }
        response = await client.post(
            "/v1/chat/completions", json=sent, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
    forwarded = msgspec.json.decode(seen[0])
    assert forwarded == {
        **sent,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }
    assert list(forwarded) == list(sent)  # key order kept


# -- usage stored with the request ----------------------------------------------------------------


async def test_upstream_usage_is_stored_verbatim_once_per_request(mocked: Mocked) -> None:
    client, key, _ = mocked
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
    )
    request_id = response.headers["x-request-id"]
    store = client.app.state.gateway.store
    events = {}
    for kind in ("input", "cached_input", "output"):
        events[kind] = await store.get_event(transaction_id=f"{request_id}:{kind}")
    assert {k: e.properties["tokens"] for k, e in events.items()} == {
        "input": 8,
        "cached_input": 3,
        "output": 7,  # reasoning (4) and rejected prediction tokens are inside, not added
    }
    raw = events["input"].properties["usage_raw"]
    assert msgspec.json.encode(raw) == msgspec.json.encode(CHAT_REPLY["usage"])  # verbatim
    assert "usage_raw" not in events["cached_input"].properties
    assert "usage_raw" not in events["output"].properties
    assert {e.properties["usage_source"] for e in events.values()} == {"upstream"}


def test_streamed_usage_is_stored_verbatim(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(cached_tokens=2, reasoning_tokens=3)
    client = gateway.client(api_key)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    (usage_chunk,) = [c for c in chunks if c.usage is not None]
    assert usage_chunk.usage is not None
    (raw,) = [
        e.properties["usage_raw"] for e in stored_events(gateway) if "usage_raw" in e.properties
    ]
    assert raw == usage_chunk.usage.model_dump(exclude_unset=True)
    assert raw["completion_tokens_details"]["reasoning_tokens"] == 3


def test_estimates_store_no_raw_usage(
    gateway: Gateway, api_key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(no_usage=True)
    gateway.client(api_key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    events = stored_events(gateway)
    assert events
    assert all("usage_raw" not in e.properties and "estimate" not in e.properties for e in events)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_history_makes_the_estimate_a_lower_bound(
    gateway: Gateway, simulator: SimulatorServer, counter: TokenCounter, stream: bool
) -> None:
    simulator.control.set_faults(no_usage=True)
    with_history, without = gateway.new_key("with"), gateway.new_key("without")
    for key, extra in ((with_history, {"previous_response_id": "resp_earlier"}), (without, {})):
        client = gateway.client(key)
        reply: Any = client.responses.create(
            model="gpt-4o", input="and then?", stream=stream, **extra
        )
        if stream:
            list(reply)
    marks: dict[str, set[object]] = {}
    for event in stored_events(gateway):
        subscription = event.external_subscription_id.split(":")[0]
        marks.setdefault(subscription, set()).add(event.properties.get("estimate"))
        assert event.properties["usage_source"] == "estimated"
    assert marks == {"with": {"lower_bound"}, "without": {None}}
    counter = TokenCounter()
    rows = {
        r["type"]: r["tokens"] for r in usage_of(gateway, with_history)["key_usage"]["breakdown"]
    }
    # What the gateway can see is counted; the stored history upstream is not (lower bound).
    assert rows["input"] == counter.count_responses_input({"input": "and then?"}, "gpt-4o")


# -- client disconnect stops the upstream call ---------------------------------------------------


class EndlessUpstream:
    """A raw ASGI upstream, served on loopback, that streams content until its client (the
    gateway) hangs up; it notes the hang-up, as a provider would stop generating."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.sent = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass  # the request body
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.closed.set()

        watcher = asyncio.ensure_future(watch())
        try:
            while not self.closed.is_set():
                self.sent += 1
                body = content_chunk(f" w{self.sent}")
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await asyncio.sleep(0.005)
        finally:
            watcher.cancel()


@pytest.fixture
def endless(tmp_path: Path) -> Iterator[tuple[Gateway, EndlessUpstream]]:
    upstream = EndlessUpstream()
    with BackgroundServer(upstream, name="upstream") as provider:
        settings = demo_settings(
            load_settings(env={}),
            upstream_url=f"{provider.url}/v1",
            db=tmp_path / "e.db",
            port=0,
        )
        with BackgroundServer(create_app(settings), lifespan="on", name="gateway") as server:
            running = Gateway(server, settings)
            yield running, upstream
            running.close_clients()


def test_client_disconnect_stops_the_upstream_and_meters_what_was_generated(
    endless: tuple[Gateway, EndlessUpstream], counter: TokenCounter
) -> None:
    gateway, upstream = endless
    key = gateway.new_key()
    client = gateway.client(key)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    received = []
    for chunk in stream:
        received.append(chunk.choices[0].delta.content or "")
        if len(received) == 5:
            break
    stream.close()  # the client goes away mid-stream
    assert upstream.closed.wait(10), "the gateway kept the upstream call open"
    generated = upstream.sent
    rows: dict[str, Any] = {}
    for _ in range(100):  # the metering of a cancelled stream finishes in its own task
        rows = {r["type"]: r["tokens"] for r in usage_of(gateway, key)["key_usage"]["breakdown"]}
        if "output" in rows:
            break
        threading.Event().wait(0.05)
    assert rows["input"] == counter.count_chat_prompt(MESSAGES, "gpt-4o")
    # Everything the gateway read is billed: at least what the client saw, at most what the
    # upstream generated before it was stopped.
    seen_text = counter.count_completion(["".join(received)], "gpt-4o")
    all_text = counter.count_completion(
        ["".join(f" w{n}" for n in range(1, generated + 1))], "gpt-4o"
    )
    assert seen_text <= rows["output"] <= all_text
    assert upstream.sent == generated  # nothing more was generated after the close
    assert {e.properties["usage_source"] for e in stored_events(gateway)} == {"estimated"}
