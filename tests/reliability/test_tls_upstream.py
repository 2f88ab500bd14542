"""The HTTPS upstream path end to end: the simulator served over TLS with a certificate from a
test CA (trustme), the gateway trusting that CA through ``upstreams.<name>.ca_bundle``.

Plain and streamed chat through the official SDK meter the upstream's exact usage; a gateway
that does not trust the CA answers a clear 502 at once (not retried, never a hang), and tells
the operator what to set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import trustme

from config import ConfigError, load_settings
from proxy.background import BackgroundServer
from proxy.simulator import create_app as simulator_app
from proxy.simulator.config import SimulatorConfig
from tests.reliability.clients import chat
from tests.reliability.conftest import GatewayFactory
from tests.reliability.support import MODEL, UPSTREAM_KEY, stored_events, write_config

QUESTION = [{"role": "user", "content": "hello over TLS"}]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_upstream(ca: trustme.CA, tmp_path: Path) -> Iterator[BackgroundServer]:
    """The simulator on https://127.0.0.1:<port>, its certificate signed by ``ca``."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "upstream-chain.pem", tmp_path / "upstream-key.pem"
    cert.cert_chain_pems[0].write_to_path(chain)
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(chain, append=True)
    cert.private_key_pem.write_to_path(key)
    app = simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY))
    with BackgroundServer(app, name="tls-upstream", tls=(str(chain), str(key))) as server:
        yield server


def bundle(ca: trustme.CA, path: Path) -> str:
    ca.cert_pem.write_to_path(path)
    return str(path)


def test_plain_and_streamed_chat_over_https_meter_the_upstreams_usage(
    make_gateway: GatewayFactory, tls_upstream: BackgroundServer, ca: trustme.CA, tmp_path: Path
) -> None:
    assert tls_upstream.url.startswith("https://")
    gateway = make_gateway(
        f"{tls_upstream.url}/v1", upstream={"ca_bundle": bundle(ca, tmp_path / "ca.pem")}
    )
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.new_key(), max_retries=0)
    plain = client.chat.completions.create(model=MODEL, messages=QUESTION)
    assert plain.usage is not None
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    client.close()
    streamed = chunks[-1].usage
    assert streamed is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    events = stored_events(gateway.db)
    assert {e["usage_source"] for e in events} == {"upstream"}
    totals = {"input": 0, "output": 0}
    for event in events:
        totals[event["type"]] += int(event["tokens"])
    assert totals == {
        "input": plain.usage.prompt_tokens + streamed.prompt_tokens,
        "output": plain.usage.completion_tokens + streamed.completion_tokens,
    }


@pytest.mark.parametrize("trust", ["another CA", "the default bundle"])
async def test_an_untrusted_certificate_is_a_clear_502_at_once(
    make_gateway: GatewayFactory,
    tls_upstream: BackgroundServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    trust: str,
) -> None:
    upstream = {"retries": 3, "retry_backoff_seconds": 5.0}
    if trust == "another CA":
        upstream["ca_bundle"] = bundle(trustme.CA(), tmp_path / "other-ca.pem")
    gateway = make_gateway(f"{tls_upstream.url}/v1", upstream=upstream)
    key = gateway.new_key()
    # Retrying would take 3 x 5 s of backoff: a TLS failure is not retried.
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        with caplog.at_level(logging.ERROR, logger="tallygate.upstream"):
            for stream in (False, True):
                seen = await chat(client, key, stream=stream)
                assert seen.status == 502
                error = seen.body["error"]
                assert error["code"] == "upstream_unavailable"
                assert error["message"] == (
                    "The upstream 'sim' could not be reached: its TLS certificate is not trusted."
                )
    logged = [r.getMessage() for r in caplog.records if r.name == "tallygate.upstream"]
    assert len(logged) == 2
    assert "upstream 'sim': the TLS certificate of 127.0.0.1:" in logged[0]
    assert "upstreams.sim.ca_bundle" in logged[0]
    assert gateway.event_count() == 0


def test_a_ca_bundle_that_cannot_be_used_is_a_config_error(tmp_path: Path) -> None:
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("this is not a certificate\n")
    cases = {
        "https://127.0.0.1:9/v1": str(tmp_path / "missing.pem"),
        "https://127.0.0.1:10/v1": str(not_pem),
        "http://127.0.0.1:11/v1": str(not_pem),
    }
    for url, ca_bundle in cases.items():
        config = write_config(tmp_path, url, port=0, upstream={"ca_bundle": ca_bundle})
        with pytest.raises(ConfigError) as caught:
            load_settings(config, env={})
        (issue,) = caught.value.issues
        assert issue.path == "upstreams.sim.ca_bundle", url


def test_upstreams_sharing_a_host_and_port_must_trust_alike(ca: trustme.CA, tmp_path: Path) -> None:
    # They share pooled connections, so one TLS trust per host and port.
    pem = bundle(ca, tmp_path / "ca.pem")
    config = tmp_path / "shared.toml"
    config.write_text(
        "use_default_catalog = false\n"
        f'[upstreams.a]\nbase_url = "https://llm.internal/v1"\nca_bundle = "{pem}"\n'
        '[upstreams.b]\nbase_url = "https://llm.internal:443/v2"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    (issue,) = caught.value.issues
    assert issue.path == "upstreams.b.ca_bundle"
    assert "the same ca_bundle as upstreams.a" in issue.expected
