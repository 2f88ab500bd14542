"""``GET /v1/usage?from=&to=&window=&group_by=``: a key's own usage per UTC hour or day.

The real app (AsyncTestClient, one event loop) in front of the real simulator app (ASGI
transport), with a clock the test moves, so requests land in known windows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from config import Settings, load_settings
from proxy.app import create_app
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import create_app as simulator_app
from proxy.usage_series import MAX_WINDOWS

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Clock:
    """The gateway's clock, moved by the test (events are stamped with request start)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Series:
    """The running app, its clock, and helpers to mint keys and make metered calls."""

    def __init__(self, client: AsyncTestClient[Litestar], clock: Clock, settings: Settings):
        self.client = client
        self.clock = clock
        self.settings = settings

    async def key(self, customer: str) -> str:
        store = self.client.app.state.gateway.store
        issued = await issue_key(store, self.settings, customer=customer, now=self.clock())
        return issued.secret

    async def chat(self, key: str, model: str, at: timedelta, words: int = 3) -> dict[str, Any]:
        self.clock.now = T0 + at
        response = await self.client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hi " * words}]},
        )
        assert response.status_code == 200, response.text
        usage: dict[str, Any] = response.json()["usage"]
        return usage

    async def series(self, key: str, query: str) -> httpx.Response:
        self.clock.now = T0 + timedelta(days=30)
        return await self.client.get(
            f"/v1/usage?{query}", headers={"Authorization": f"Bearer {key}"}
        )


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Series]:
    settings = demo_settings(
        load_settings(env={}), upstream_url="http://sim.test/v1", db=tmp_path / "s.db", port=0
    )
    clock = Clock(T0)
    transport = httpx.ASGITransport(app=simulator_app())
    async with AsyncTestClient(create_app(settings, clock=clock, transport=transport)) as client:
        yield Series(client, clock, settings)


def iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat().replace("+00:00", "Z")


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


async def test_hourly_series_per_model_and_type_for_the_key_only(running: Series) -> None:
    alice = await running.key("acme")
    bob = await running.key("acme")  # same customer and plan: the same subscription
    other = await running.key("globex")
    seen = [
        await running.chat(alice, "gpt-4o-mini", hours(10.5), words=3),
        await running.chat(alice, "gpt-4o-mini", hours(10.75), words=5),
        await running.chat(alice, "gpt-4o", hours(12.25), words=7),
    ]
    await running.chat(bob, "gpt-4o-mini", hours(10.6), words=11)
    await running.chat(other, "gpt-4o-mini", hours(10.6), words=13)

    response = await running.series(
        alice, f"from={iso(hours(10))}&to={iso(hours(13))}&window=hour&group_by=model,type"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "usage.series"
    assert (body["window"], body["group_by"]) == ("hour", ["model", "type"])
    assert body["key"]["external_subscription_id"] == "acme:llm_default"
    assert [(w["start"], w["end"]) for w in body["data"]] == [
        (iso(hours(10)), iso(hours(11))),
        (iso(hours(11)), iso(hours(12))),
        (iso(hours(12)), iso(hours(13))),
    ]
    first, empty, last = (w["results"] for w in body["data"])
    mini_prompt = seen[0]["prompt_tokens"] + seen[1]["prompt_tokens"]
    mini_completion = seen[0]["completion_tokens"] + seen[1]["completion_tokens"]
    assert first == [
        {"model": "gpt-4o-mini", "type": "input", "tokens": mini_prompt, "events_count": 2},
        {"model": "gpt-4o-mini", "type": "output", "tokens": mini_completion, "events_count": 2},
    ]
    assert empty == []
    assert last == [
        {"model": "gpt-4o", "type": "input", "tokens": seen[2]["prompt_tokens"], "events_count": 1},
        {
            "model": "gpt-4o",
            "type": "output",
            "tokens": seen[2]["completion_tokens"],
            "events_count": 1,
        },
    ]


async def test_daily_series_clips_edges_and_group_by_key_shows_only_the_caller(
    running: Series,
) -> None:
    alice = await running.key("acme")
    bob = await running.key("acme")
    early = await running.chat(alice, "gpt-4o-mini", hours(1))
    late = await running.chat(alice, "gpt-4o-mini", hours(30))
    await running.chat(bob, "gpt-4o-mini", hours(29))
    # From 02:00 on day one: the 01:00 request is outside the clipped first window.
    response = await running.series(alice, f"from={iso(hours(2))}&to={iso(hours(48))}&group_by=key")
    body = response.json()
    assert body["window"] == "day"
    assert [(w["start"], w["end"]) for w in body["data"]] == [
        (iso(hours(2)), iso(hours(24))),
        (iso(hours(24)), iso(hours(48))),
    ]
    alice_id = body["key"]["id"]
    assert [w["results"] for w in body["data"]] == [
        [],
        [{"key_id": alice_id, "tokens": late["total_tokens"], "events_count": 2}],
    ]
    # Without the clip, both of alice's requests; a date without time is midnight UTC.
    whole = (await running.series(alice, "from=2026-03-01&to=2026-03-03")).json()
    assert sum(r["tokens"] for w in whole["data"] for r in w["results"]) == (
        early["total_tokens"] + late["total_tokens"]
    )
    # Bob's view never holds alice's usage or id.
    bob_body = (
        await running.series(bob, f"from={iso(hours(0))}&to={iso(hours(48))}&group_by=key")
    ).json()
    rows = [r for w in bob_body["data"] for r in w["results"]]
    assert [r["key_id"] for r in rows] == [bob_body["key"]["id"]]
    assert alice_id not in str(bob_body)


async def test_every_problem_is_listed_in_one_openai_error(running: Series) -> None:
    key = await running.key("acme")
    response = await running.series(key, "from=yesterday&window=week&group_by=model,colour&limit=5")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_usage_query"
    assert set(error["param"].split(",")) == {"from", "window", "group_by", "limit"}
    for fragment in ("from:", "window: must be hour or day", "group_by:", "limit: unknown"):
        assert fragment in error["message"]
    for query, param in [
        ("window=hour", "from"),
        (f"from={iso(hours(5))}&to={iso(hours(5))}", "to"),
        (f"from={iso(hours(0))}&to={iso(hours(MAX_WINDOWS + 1))}&window=hour", "window"),
        (f"from={iso(hours(0))}&from={iso(hours(1))}", "from"),
        ("from=1900-01-01", "from"),
    ]:
        refused = await running.series(key, query)
        assert refused.status_code == 400, query
        assert refused.json()["error"]["param"] == param, query
    # The largest allowed range is fine.
    allowed = await running.series(
        key, f"from={iso(hours(0))}&to={iso(hours(MAX_WINDOWS))}&window=hour"
    )
    assert allowed.status_code == 200
    assert len(allowed.json()["data"]) == MAX_WINDOWS


async def test_series_needs_a_valid_key(running: Series) -> None:
    response = await running.client.get(f"/v1/usage?from={iso(hours(0))}")
    assert response.status_code == 401
    bad = await running.client.get(
        f"/v1/usage?from={iso(hours(0))}", headers={"Authorization": "Bearer tg-nope"}
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_api_key"
