"""The control API: reported-usage totals, per-path counters and the request log."""

from __future__ import annotations

import httpx
import openai
import pytest

from proxy.simulator import SimulatorConfig, SimulatorServer
from tests.simulator.helpers import CHAT, USER


def test_stats_sum_only_usage_that_reached_the_wire(
    sim: SimulatorServer, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="m", messages=USER)  # 9 + 16
    list(
        client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    )  # 9 + 16
    list(client.chat.completions.create(model="m", messages=USER, stream=True))  # no usage sent
    client.embeddings.create(model="m", input=["a b", "c"])  # 3
    client.responses.create(model="m", input="a", extra_headers={"x-sim-cached-tokens": "2"})
    # the Responses call: 3 + (3 + 1) = 7 input (2 cached) + 16 output
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="m", messages=USER, extra_headers={"x-sim-status": "429"}
        )
    client.chat.completions.create(model="m", messages=USER, extra_headers={"x-sim-no-usage": "1"})

    stats = sim.control.stats()
    assert stats["usage"] == {
        "responses": 4,
        "prompt_tokens": 9 + 9 + 3 + 7,
        "completion_tokens": 16 + 16 + 16,
        "total_tokens": 25 + 25 + 3 + 23,
        "cached_tokens": 2,
        "reasoning_tokens": 0,
    }
    assert stats["requests"] == {CHAT: 5, "/v1/embeddings": 1, "/v1/responses": 1}
    assert stats["total_requests"] == 7


def test_a_cut_stream_counts_the_last_usage_it_sent(
    sim: SimulatorServer, http: httpx.Client
) -> None:
    headers = {"x-sim-usage-every-chunk": "1", "x-sim-cut-after": "3"}
    with (
        http.stream(
            "POST", CHAT, json={"model": "m", "messages": USER, "stream": True}, headers=headers
        ) as rsp,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        rsp.read()

    # role chunk (0 completion tokens), w0 (1), w1 (2), then the cut
    usage = sim.control.stats()["usage"]
    assert (usage["responses"], usage["prompt_tokens"], usage["completion_tokens"]) == (1, 9, 2)


def test_stats_reset(sim: SimulatorServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="m", messages=USER)
    sim.control.reset_stats()

    stats = sim.control.stats()
    assert stats["total_requests"] == 0
    assert stats["usage"]["prompt_tokens"] == 0


def test_request_log_keeps_raw_bytes_headers_and_query(
    sim: SimulatorServer, http: httpx.Client
) -> None:
    raw = b'{"model":"m",  "messages":[{"role":"user","content":"caf\xc3\xa9"}]}'
    http.post(
        f"{CHAT}?trace=1&x=y",
        content=raw,
        headers={
            "content-type": "application/json",
            "authorization": "Bearer upstream-key",
            "x-custom": "v",
        },
    )

    logged = sim.control.requests()
    assert len(logged) == 1
    entry = logged[0]
    assert (entry["method"], entry["path"], entry["query"]) == ("POST", CHAT, "trace=1&x=y")
    assert entry["body"] == raw.decode()
    assert (entry["body_size"], entry["body_truncated"]) == (len(raw), False)
    assert entry["headers"]["authorization"] == "Bearer upstream-key"
    assert entry["headers"]["x-custom"] == "v"


def test_control_requests_are_neither_logged_nor_counted(sim: SimulatorServer) -> None:
    sim.control.stats()
    sim.control.faults()

    assert sim.control.requests() == []
    assert sim.control.stats()["total_requests"] == 0


def test_request_log_clear(sim: SimulatorServer, client: openai.OpenAI) -> None:
    client.models.list()
    assert len(sim.control.requests()) == 1

    sim.control.clear_requests()
    assert sim.control.requests() == []


def test_request_log_memory_is_bounded() -> None:
    config = SimulatorConfig(request_log_size=3, request_log_body_limit=10)
    with SimulatorServer(config) as small, httpx.Client(base_url=small.url, trust_env=False) as raw:
        for number in range(5):
            raw.post("/v1/embeddings", json={"model": "m", "input": f"request {number}"})
        logged = small.control.requests()

    assert len(logged) == 3
    assert [len(entry["body"]) for entry in logged] == [10, 10, 10]
    assert all(entry["body_truncated"] for entry in logged)
    assert logged[-1]["body_size"] > 10


def test_unknown_control_path(http: httpx.Client) -> None:
    missing = http.get("/_sim/nothing")
    wrong = http.put("/_sim/stats")

    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert "error" in wrong.json()
