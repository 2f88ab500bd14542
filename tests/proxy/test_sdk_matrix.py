"""The official ``openai`` SDK, sync and async, on every surface, streamed or not, with
``include_usage`` absent, false or true: ``GET /v1/usage`` equals the usage the client saw.

For a stream whose client did not ask for usage, the client sees none; the truth is then what
the simulated upstream reported on the wire (``/_sim/stats``). One gateway and one simulator
serve the whole module (each test has its own customer, hence its own subscription) to keep
the matrix fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from config import load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.simulator import SimulatorServer
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES

MODELS = {
    "chat": "gpt-4o-mini",
    "completions": "gpt-3.5-turbo",
    "embeddings": "text-embedding-3-small",
    "responses": "gpt-4o",
}


@dataclass(frozen=True)
class Case:
    surface: str
    stream: bool
    include_usage: bool | None  # None: the client sends no stream_options

    def __str__(self) -> str:
        mode = "stream" if self.stream else "plain"
        usage = "" if self.include_usage is None else f"-include_usage={self.include_usage}"
        return f"{self.surface}-{mode}{usage}"

    @property
    def options(self) -> dict[str, Any]:
        if self.include_usage is None:
            return {}
        return {"stream_options": {"include_usage": self.include_usage}}


CASES = [
    *(
        Case(surface, stream, usage)
        for surface in ("chat", "completions")
        for stream, usage in [(False, None), (True, None), (True, False), (True, True)]
    ),
    Case("embeddings", False, None),
    Case("responses", False, None),
    Case("responses", True, None),  # no include_usage on this surface: usage always arrives
]


@dataclass(frozen=True)
class Seen:
    """Usage as the client saw it (or, for a usage-less stream, as the upstream reported it)."""

    prompt: int
    completion: int
    cached: int = 0


def seen_of(usage: Any) -> Seen:
    if hasattr(usage, "input_tokens"):  # Responses naming
        details = usage.input_tokens_details
        return Seen(
            usage.input_tokens, usage.output_tokens, details.cached_tokens if details else 0
        )
    details = getattr(usage, "prompt_tokens_details", None)
    cached = details.cached_tokens or 0 if details is not None else 0
    return Seen(usage.prompt_tokens, getattr(usage, "completion_tokens", 0), cached)


def from_chunks(case: Case, chunks: list[Any]) -> Seen | None:
    """What a streamed client saw; asserts the include_usage rules on the way."""
    if case.surface == "responses":
        assert chunks[-1].type == "response.completed"
        return seen_of(chunks[-1].response.usage)
    with_usage = [c for c in chunks if c.usage is not None]
    if case.include_usage:
        (usage_chunk,) = with_usage  # exactly one
        assert usage_chunk.choices == []
        return seen_of(usage_chunk.usage)
    assert with_usage == []
    assert all(c.choices for c in chunks)  # never a choices == [] chunk
    return None


def call_sync(client: openai.OpenAI, case: Case) -> Seen | None:
    model = MODELS[case.surface]
    stream: Any
    if case.surface == "chat":
        if not case.stream:
            return seen_of(client.chat.completions.create(model=model, messages=MESSAGES).usage)
        stream = client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, **case.options
        )
    elif case.surface == "completions":
        if not case.stream:
            return seen_of(client.completions.create(model=model, prompt="one two three").usage)
        stream = client.completions.create(
            model=model, prompt=["a b", "c d e"], stream=True, **case.options
        )
    elif case.surface == "embeddings":
        return seen_of(client.embeddings.create(model=model, input=["red green", "blue"]).usage)
    else:
        if not case.stream:
            return seen_of(client.responses.create(model=model, input="hello there").usage)
        stream = client.responses.create(model=model, input="hello there", stream=True)
    return from_chunks(case, list(stream))


async def call_async(client: openai.AsyncOpenAI, case: Case) -> Seen | None:
    model = MODELS[case.surface]
    stream: Any
    if case.surface == "chat":
        if not case.stream:
            reply = await client.chat.completions.create(model=model, messages=MESSAGES)
            return seen_of(reply.usage)
        stream = await client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, **case.options
        )
    elif case.surface == "completions":
        if not case.stream:
            done = await client.completions.create(model=model, prompt="one two three")
            return seen_of(done.usage)
        stream = await client.completions.create(
            model=model, prompt=["a b", "c d e"], stream=True, **case.options
        )
    elif case.surface == "embeddings":
        vectors = await client.embeddings.create(model=model, input=["red green", "blue"])
        return seen_of(vectors.usage)
    else:
        if not case.stream:
            response = await client.responses.create(model=model, input="hello there")
            return seen_of(response.usage)
        stream = await client.responses.create(model=model, input="hello there", stream=True)
    return from_chunks(case, [chunk async for chunk in stream])


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer() as server:
        yield server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, sim: SimulatorServer) -> Iterator[Gateway]:
    db: Path = tmp_path_factory.mktemp("matrix") / "m.db"
    settings = demo_settings(load_settings(env={}), upstream_url=sim.base_url, db=db, port=0)
    with BackgroundServer(create_app(settings), lifespan="on", name="gateway") as server:
        running = Gateway(server, settings)
        yield running
        running.close_clients()


def get_usage(gateway: Gateway, key: str, query: str = "") -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.base_url}/usage{query}", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    body: dict[str, Any] = response.json()
    return body


def check_metered(gateway: Gateway, sim: SimulatorServer, key: str, case: Case, seen: Seen | None):
    """/v1/usage (current period and series) equals what the client saw, split by type."""
    wire = sim.control.stats()["usage"]
    reported = Seen(wire["prompt_tokens"], wire["completion_tokens"], wire["cached_tokens"])
    if seen is None:
        seen = reported  # the client asked for no usage: the upstream's report is the truth
    assert seen == reported  # the gateway passed the upstream's numbers on unchanged
    model = MODELS[case.surface]
    expected = {
        (model, kind): tokens
        for kind, tokens in [
            ("input", seen.prompt - seen.cached),
            ("cached_input", seen.cached),
            ("output", seen.completion),
        ]
        if tokens
    }
    body = get_usage(gateway, key)
    breakdown = {(r["model"], r["type"]): r["tokens"] for r in body["key_usage"]["breakdown"]}
    assert breakdown == expected
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    series = get_usage(gateway, key, f"?from={since}&window=hour&group_by=model,type")
    totals: dict[tuple[str, str], int] = {}
    for window in series["data"]:
        for row in window["results"]:
            key_ = (row["model"], row["type"])
            totals[key_] = totals.get(key_, 0) + row["tokens"]
    assert totals == expected


@pytest.fixture
def key(shared: Gateway, request: pytest.FixtureRequest) -> str:
    """A key of its own customer (own subscription), minted outside any event loop."""
    return shared.new_key(request.node.name)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sync_sdk(shared: Gateway, sim: SimulatorServer, key: str, case: Case) -> None:
    sim.control.reset_stats()
    seen = call_sync(shared.client(key), case)
    check_metered(shared, sim, key, case, seen)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_async_sdk(shared: Gateway, sim: SimulatorServer, key: str, case: Case) -> None:
    sim.control.reset_stats()
    async with openai.AsyncOpenAI(base_url=shared.base_url, api_key=key, max_retries=0) as client:
        seen = await call_async(client, case)
    check_metered(shared, sim, key, case, seen)


def test_models_sync(shared: Gateway, key: str) -> None:
    client = shared.client(key)
    ids = [model.id for model in client.models.list()]
    assert set(MODELS.values()) <= set(ids)
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-99")


async def test_models_async(shared: Gateway, key: str) -> None:
    async with openai.AsyncOpenAI(base_url=shared.base_url, api_key=key, max_retries=0) as client:
        ids = [model.id async for model in client.models.list()]
        assert set(MODELS.values()) <= set(ids)
        assert (await client.models.retrieve("gpt-4o-mini")).owned_by == "simulator"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("gpt-99")
