"""The canned fast path (`SimulatorConfig.canned`): the benchmark upstream's answers."""

from __future__ import annotations

import openai

from proxy.simulator import Faults, SimulatorConfig, SimulatorServer
from proxy.simulator.canned import CANNED_PROMPT_TOKENS
from tests.simulator.helpers import USER

CANNED = SimulatorConfig(canned=True, api_key="sk-canned", faults=Faults(chunks=4))


def test_canned_answers_are_openai_shaped_with_the_configured_chunks() -> None:
    with (
        SimulatorServer(CANNED) as sim,
        openai.OpenAI(base_url=sim.base_url, api_key="sk-canned", max_retries=0) as sdk,
    ):
        reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=USER)
        assert reply.choices[0].message.content == "w0 w1 w2 w3"
        assert reply.usage is not None
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
            CANNED_PROMPT_TOKENS,
            4,
        )

        stream = sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        assert text == "w0 w1 w2 w3"
        usages = [c.usage for c in parts if c.usage is not None]
        assert len(usages) == 1
        assert usages[0].total_tokens == CANNED_PROMPT_TOKENS + 4

        plain = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
        assert plain
        assert all(c.usage is None for c in plain)
        # The canned path skips the request log and the counters: it is for load only.
        assert sim.control.stats()["total_requests"] == 0


def test_other_endpoints_keep_their_full_behaviour_in_canned_mode() -> None:
    with (
        SimulatorServer(CANNED) as sim,
        openai.OpenAI(base_url=sim.base_url, api_key="sk-canned", max_retries=0) as sdk,
    ):
        embedded = sdk.embeddings.create(model="text-embedding-3-small", input="one two")
        assert embedded.usage.prompt_tokens == 2
        assert sim.control.stats()["total_requests"] == 1
