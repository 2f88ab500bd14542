"""Every upstream fault the simulator can inject: what the client gets, what is metered, and
that the gateway keeps serving. Retries happen only before anything reached the client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from proxy.background import bind_socket
from proxy.simulator import SimulatorServer
from proxy.tokens import TokenCounter
from tests.reliability.clients import Seen, chat, chat_body, metered_matches
from tests.reliability.conftest import GatewayFactory, LocalGateway
from tests.reliability.support import (
    MODEL,
    UPSTREAM_KEY,
    free_port,
    stored_events,
    until,
    usage_by_request,
)

FAST = {"retry_backoff_seconds": 0.01}


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> LocalGateway:
    return make_gateway(upstream={**FAST, "retries": 2, "read_timeout": 1.0})


@pytest.fixture
async def client(gateway: LocalGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


@pytest.fixture
def key(gateway: LocalGateway) -> str:
    return gateway.new_key()


def forwarded(simulator: SimulatorServer) -> int:
    return int(simulator.control.stats()["total_requests"])


def assert_gateway_error(seen: Seen, status: int, code: str) -> None:
    assert seen.status == status
    error = seen.body["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == code
    # Client-safe: the upstream's name, never its URL or key.
    assert "'sim'" in error["message"]
    assert "127.0.0.1" not in error["message"]
    assert UPSTREAM_KEY not in str(seen.body)


async def still_serving(client: httpx.AsyncClient, key: str, simulator: SimulatorServer) -> None:
    """Faults off: a plain and a streamed request succeed."""
    simulator.control.reset_faults()
    for stream in (False, True):
        seen = await chat(client, key, stream=stream)
        assert seen.status == 200
        assert seen.complete


def metered(gateway: LocalGateway) -> dict[str, dict[str, int]]:
    return usage_by_request(stored_events(gateway.db))


def sources(gateway: LocalGateway, request_id: str | None) -> set[str]:
    return {
        e["usage_source"]
        for e in stored_events(gateway.db)
        if e["transaction_id"].startswith(f"{request_id}:")
    }


def estimated_prompt() -> int:
    """The cookbook count (tiktoken) of :func:`chat`'s default prompt: the fallback's rule."""
    return TokenCounter().count_chat_prompt(chat_body(False)["messages"], MODEL)


# -- no connection ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_is_a_502_after_retries_and_meters_nothing(
    make_gateway: GatewayFactory, stream: bool
) -> None:
    gateway = make_gateway(f"http://127.0.0.1:{free_port()}/v1", upstream={**FAST, "retries": 2})
    key = gateway.new_key()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        seen = await chat(client, key, stream=stream)
    assert_gateway_error(seen, 502, "upstream_unavailable")
    assert "ConnectError" in seen.body["error"]["message"]
    assert gateway.event_count() == 0


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose accept queue is full: connecting to it times out (loopback only)."""
    with bind_socket("127.0.0.1", 0) as listener:
        listener.listen(0)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # fills the queue
            yield port


async def test_connect_timeout_is_a_504_and_meters_nothing(
    make_gateway: GatewayFactory, unaccepting_port: int
) -> None:
    gateway = make_gateway(
        f"http://127.0.0.1:{unaccepting_port}/v1",
        upstream={**FAST, "retries": 1, "connect_timeout": 0.2},
    )
    key = gateway.new_key()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        seen = await chat(client, key, stream=True)
    assert_gateway_error(seen, 504, "upstream_timeout")
    assert "ConnectTimeout" in seen.body["error"]["message"]
    assert gateway.event_count() == 0


# -- answers that are errors -----------------------------------------------------------------


async def test_read_timeout_is_a_504_never_retried(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(delay_ms=3000, times=1)
    slow = asyncio.create_task(chat(client, key, stream=False))
    await until(lambda: forwarded(simulator) == 1)
    # Meanwhile, other requests are served.
    assert (await chat(client, key, stream=True)).status == 200
    seen = await slow
    assert_gateway_error(seen, 504, "upstream_timeout")
    assert "ReadTimeout" in seen.body["error"]["message"]
    # The upstream may have started generating: a read timeout is never retried.
    assert forwarded(simulator) == 2
    assert len(metered(gateway)) == 1  # only the stream that was served
    await still_serving(client, key, simulator)


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("stream", [False, True])
async def test_idempotent_5xx_before_the_first_byte_is_retried(
    gateway: LocalGateway,
    client: httpx.AsyncClient,
    key: str,
    simulator: SimulatorServer,
    status: int,
    stream: bool,
) -> None:
    simulator.control.set_faults(status=status, times=2)
    seen = await chat(client, key, stream=stream)
    assert seen.status == 200
    assert seen.complete
    assert forwarded(simulator) == 3  # two refusals, then the answer
    usage = metered(gateway)
    assert list(usage) == [seen.request_id]
    assert metered_matches(seen, usage[str(seen.request_id)])


async def test_5xx_after_the_retries_are_spent_passes_through_and_meters_nothing(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(status=503)
    for stream in (False, True):
        seen = await chat(client, key, stream=stream)
        assert seen.status == 503
        assert seen.body["error"]["message"] == "Simulated upstream error (HTTP 503)."
    assert forwarded(simulator) == 2 * 3  # 1 + 2 retries each
    simulator.control.set_faults(status=500)  # not an "it did nothing" status: no retry
    seen = await chat(client, key, stream=False)
    assert seen.status == 500
    assert forwarded(simulator) == 7
    assert gateway.event_count() == 0
    await still_serving(client, key, simulator)


@pytest.mark.parametrize("stream", [False, True])
async def test_429_passes_through_with_retry_after_and_is_not_retried(
    gateway: LocalGateway,
    client: httpx.AsyncClient,
    key: str,
    simulator: SimulatorServer,
    stream: bool,
) -> None:
    simulator.control.set_faults(status=429, retry_after=7)
    seen = await chat(client, key, stream=stream)
    assert seen.status == 429
    assert seen.headers["retry-after"] == "7"
    assert seen.body["error"]["code"] == "rate_limit_exceeded"
    assert forwarded(simulator) == 1
    assert gateway.event_count() == 0
    await still_serving(client, key, simulator)


# -- answers that break ----------------------------------------------------------------------


async def test_stream_reset_after_k_chunks_ends_with_an_error_event_and_meters_what_was_produced(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(cut_after=5, times=1)
    seen = await chat(client, key, stream=True)
    assert seen.status == 200
    assert not seen.transport_error  # the client's stream ends in order...
    assert not seen.complete  # ...without [DONE], but with OpenAI's mid-stream error event
    assert seen.error is not None
    assert seen.error["type"] == "upstream_error"
    assert seen.error["code"] == "upstream_stream_interrupted"
    assert "'sim'" in seen.error["message"]
    assert "127.0.0.1" not in seen.error["message"]
    assert seen.usage is None
    assert seen.text == " ".join(f"w{i}" for i in range(4)).lstrip()  # role chunk + 4 words
    usage = metered(gateway)[str(seen.request_id)]
    assert sources(gateway, seen.request_id) == {"estimated"}
    assert usage["input"] == estimated_prompt()
    assert usage["output"] == TokenCounter().count_completion([seen.text], MODEL)
    await still_serving(client, key, simulator)


async def test_plain_answer_cut_short_is_a_502(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(cut_after=40, times=1)
    seen = await chat(client, key, stream=False)
    assert_gateway_error(seen, 502, "upstream_unavailable")
    # Nothing usable arrived (no usage, no text): nothing is metered for it.
    assert gateway.event_count() == 0
    await still_serving(client, key, simulator)


async def test_malformed_json_is_a_502_and_the_prompt_is_metered_as_estimated(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(malformed_json=True, times=1)
    seen = await chat(client, key, stream=False)
    assert_gateway_error(seen, 502, "upstream_invalid_response")
    # The upstream processed the prompt (and bills for it); its output is unknown.
    events = stored_events(gateway.db)
    assert [(e["type"], e["tokens"], e["usage_source"]) for e in events] == [
        ("input", estimated_prompt(), "estimated")
    ]
    await still_serving(client, key, simulator)


async def test_malformed_sse_line_is_dropped_and_the_upstream_usage_metered(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.set_faults(malformed_sse=True, times=1)
    seen = await chat(client, key, stream=True)  # json-decodes every data line it gets
    assert seen.status == 200
    assert seen.complete
    assert seen.usage is not None
    assert metered_matches(seen, metered(gateway)[str(seen.request_id)])
    assert sources(gateway, seen.request_id) == {"upstream"}
    await still_serving(client, key, simulator)


async def test_stream_that_never_ends_hits_the_read_timeout_and_ends_with_an_error_event(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    # Events 1.5 s apart against a 1 s read timeout: the gateway gives up after the first.
    simulator.control.set_faults(never_end=True, chunk_delay_ms=1500, times=1)
    hanging = asyncio.create_task(chat(client, key, stream=True))
    await until(lambda: forwarded(simulator) == 1)
    other = await chat(client, key, stream=False)  # served while the stream hangs
    assert other.status == 200
    seen = await hanging
    assert seen.status == 200
    assert not seen.transport_error
    assert not seen.complete
    assert seen.error is not None
    assert seen.error["code"] == "upstream_timeout"
    # Only the role chunk came: no output was produced, the prompt was (estimated).
    assert metered(gateway)[str(seen.request_id)] == {"input": estimated_prompt()}
    assert sources(gateway, seen.request_id) == {"estimated"}
    await still_serving(client, key, simulator)


async def test_usage_sent_twice_is_seen_once_and_metered_once(
    gateway: LocalGateway, client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    simulator.control.reset_stats()
    simulator.control.set_faults(usage_twice=True)
    seen_all: list[Seen] = [await chat(client, key, stream=True) for _ in range(3)]
    for seen in seen_all:
        assert seen.complete
        assert seen.usage_chunks == 1
    usage = metered(gateway)
    assert sorted(usage) == sorted(str(s.request_id) for s in seen_all)
    for seen in seen_all:
        assert metered_matches(seen, usage[str(seen.request_id)])
    wire: dict[str, Any] = simulator.control.stats()["usage"]
    total = sum(sum(types.values()) for types in usage.values())
    assert total == wire["prompt_tokens"] + wire["completion_tokens"]
    await still_serving(client, key, simulator)
