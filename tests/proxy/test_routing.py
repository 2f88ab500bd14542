"""Routing: Azure-style deployments, aliases metered under the public name, upstream faults."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest

from config import ModelSettings, Settings, UpstreamSettings, load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer, bind_socket
from proxy.simulator import SimulatorConfig, SimulatorServer
from tests.proxy.conftest import Gateway
from tests.proxy.test_chat_metering import MESSAGES, usage_of


def routed_settings(tmp_path: Path, upstreams: dict[str, UpstreamSettings]) -> Settings:
    base = load_settings(env={"TALLYGATE_STORE__URL": f"sqlite:///{tmp_path / 'r.db'}"})
    models = {
        "team-gpt": ModelSettings(
            upstream="azure",
            upstream_model="prod-gpt4o-deployment",
            input_per_1m=Decimal("2.5"),
            output_per_1m=Decimal("10"),
        ),
        "slow-model": ModelSettings(
            upstream="slow", input_per_1m=Decimal(1), output_per_1m=Decimal(1)
        ),
        "dead-model": ModelSettings(
            upstream="dead", input_per_1m=Decimal(1), output_per_1m=Decimal(1)
        ),
    }
    return msgspec.structs.replace(
        base,
        upstreams=upstreams,
        models=models,
        secrets={**base.secrets, "AZURE_KEY": "azure-secret"},
    )


@pytest.fixture
def azure_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(api_key="azure-secret")) as sim:
        yield sim


@pytest.fixture
def routed(tmp_path: Path, azure_sim: SimulatorServer) -> Iterator[Gateway]:
    with bind_socket("127.0.0.1", 0) as closed:
        dead_port = closed.getsockname()[1]  # nothing listens there once closed
    settings = routed_settings(
        tmp_path,
        {
            "azure": UpstreamSettings(
                base_url=azure_sim.url,
                kind="azure",
                api_version="2024-10-21",
                api_key_env="AZURE_KEY",
            ),
            "slow": UpstreamSettings(base_url=azure_sim.base_url, read_timeout=0.3),
            "dead": UpstreamSettings(base_url=f"http://127.0.0.1:{dead_port}/v1"),
        },
    )
    with BackgroundServer(create_app(settings), lifespan="on") as server:
        running = Gateway(server, settings)
        yield running
        running.close_clients()


def test_azure_deployment_routing_and_alias_metering(
    routed: Gateway, azure_sim: SimulatorServer
) -> None:
    key = routed.new_key("azure-team")
    client = routed.client(key)
    reply = client.chat.completions.create(model="team-gpt", messages=MESSAGES)
    assert reply.usage is not None
    (sent,) = azure_sim.control.requests()
    assert sent["path"] == "/openai/deployments/prod-gpt4o-deployment/chat/completions"
    assert "api-version=2024-10-21" in sent["query"]
    headers = {name.lower(): value for name, value in sent["headers"].items()}
    assert headers["api-key"] == "azure-secret"
    assert "authorization" not in headers
    assert msgspec.json.decode(sent["body"])["model"] == "prod-gpt4o-deployment"
    rows = {
        (r["model"], r["type"]): r["tokens"]
        for r in usage_of(routed, key)["key_usage"]["breakdown"]
    }
    assert rows == {
        ("team-gpt", "input"): reply.usage.prompt_tokens,
        ("team-gpt", "output"): reply.usage.completion_tokens,
    }


def test_upstream_timeout_and_refused_connection(
    routed: Gateway, azure_sim: SimulatorServer
) -> None:
    key = routed.new_key("faults")
    azure_sim.control.set_faults(delay_ms=1500, times=1)
    response = httpx.post(
        f"{routed.base_url}/chat/completions",
        json={"model": "slow-model", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    response = httpx.post(
        f"{routed.base_url}/chat/completions",
        json={"model": "dead-model", "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert "127.0.0.1" not in error["message"]  # no upstream URL leaks to clients
    assert usage_of(routed, key)["key_usage"]["breakdown"] == []


def test_azure_stream_is_routed_injected_and_metered_under_the_alias(
    routed: Gateway, azure_sim: SimulatorServer
) -> None:
    key = routed.new_key("azure-stream")
    chunks = list(
        routed.client(key).chat.completions.create(model="team-gpt", messages=MESSAGES, stream=True)
    )
    assert chunks
    assert all(c.usage is None and c.choices for c in chunks)  # the client asked for none
    (sent,) = azure_sim.control.requests()
    assert sent["path"] == "/openai/deployments/prod-gpt4o-deployment/chat/completions"
    assert "api-version=2024-10-21" in sent["query"]
    forwarded = msgspec.json.decode(sent["body"])
    assert forwarded["model"] == "prod-gpt4o-deployment"
    assert forwarded["stream_options"] == {"include_usage": True}
    reported = azure_sim.control.stats()["usage"]
    rows = {
        (r["model"], r["type"]): r["tokens"]
        for r in usage_of(routed, key)["key_usage"]["breakdown"]
    }
    assert rows == {
        ("team-gpt", "input"): reported["prompt_tokens"],
        ("team-gpt", "output"): reported["completion_tokens"],
    }
