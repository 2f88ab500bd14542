"""The event objects the events routes answer: exact keys, order and formats, and new ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
from hypothesis import given
from hypothesis import strategies as st

from metering.formats import format_timestamp_ms
from proxy.lago.event_json import EventIds, timestamp_ms
from tests.lago.conftest import LAGO_EVENT_KEYS

_KEYS = list(LAGO_EVENT_KEYS)


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamp_ms_is_lagos_format(moment: datetime) -> None:
    assert timestamp_ms(moment) == format_timestamp_ms(moment)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)))
def test_timestamp_ms_converts_other_zones_to_utc(moment: datetime) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(hours=-5)))
    assert timestamp_ms(aware) == format_timestamp_ms(aware)
    assert timestamp_ms(aware).endswith("Z")


def test_event_ids_are_distinct_random_uuid4_across_pool_refills() -> None:
    ids = EventIds(pool=3)
    taken = ids.take(10) + ids.take(1)
    assert len(set(taken)) == 11
    for text in taken:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_batch_answer_echoes_each_event_in_lagos_shape(http: httpx.Client) -> None:
    response = http.post(
        "/events/batch",
        content=b'{"events": ['
        b'{"transaction_id": "b-1", "external_subscription_id": "sub-1", "code": "llm_tokens",'
        b' "timestamp": 1651240791.0456, "properties": {"tokens": 12.0, "model": "m"}},'
        b'{"transaction_id": 7, "code": "llm_tokens", "timestamp": "1651240791",'
        b' "precise_total_amount_cents": 12.50}]}',
    )
    assert response.status_code == 200
    first, second = response.json()["events"]
    assert list(first) == _KEYS
    assert list(second) == _KEYS
    assert first["transaction_id"] == "b-1"
    assert first["lago_customer_id"] is None
    assert first["lago_subscription_id"] is None
    assert first["external_subscription_id"] == "sub-1"
    assert first["code"] == "llm_tokens"
    assert first["timestamp"] == "2022-04-29T13:59:51.045Z"
    assert first["precise_total_amount_cents"] is None
    assert first["properties"] == {"tokens": 12.0, "model": "m"}
    assert b'"tokens":12.0' in response.content  # the number keeps its text
    assert second["transaction_id"] == "7"
    assert second["external_subscription_id"] == ""
    assert second["timestamp"] == "2022-04-29T13:59:51.000Z"
    assert second["precise_total_amount_cents"] == "12.50"
    assert second["properties"] == {}
    assert first["created_at"] == second["created_at"]
    assert datetime.strptime(first["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert uuid.UUID(first["lago_id"]).version == 4
    assert first["lago_id"] != second["lago_id"]
    shown = http.get("/events/b-1").json()["event"]
    assert list(shown) == _KEYS
    assert shown == first
