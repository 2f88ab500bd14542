"""``/api/v1/events``: single and batch ingestion, idempotency, timestamps, lookup."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent, Event

from tests.lago.conftest import LAGO_EVENT_KEYS, AdminGateway


def _event(transaction_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "external_subscription_id": "sub-1",
        "code": "llm_tokens",
        **extra,
    }


def test_single_event_shape_with_the_python_client(lago: Client) -> None:
    created = lago.events.create(
        Event(
            transaction_id="t-1",
            external_subscription_id="sub-1",
            code="llm_tokens",
            timestamp=1651240791,
            properties={"model": "gpt-4", "tokens": 10},
        )
    )
    assert created is not None
    assert created.timestamp == "2022-04-29T13:59:51.000Z"
    assert created.lago_customer_id is None
    assert created.lago_subscription_id is None
    assert created.precise_total_amount_cents is None
    found = lago.events.find("t-1")
    assert found.lago_id == created.lago_id
    assert found.properties == {"model": "gpt-4", "tokens": 10}


def test_response_fields_and_decimal_text(http: httpx.Client) -> None:
    response = http.post(
        "/events",
        content=b'{"event": {"transaction_id": "t-1", "external_subscription_id": "sub-1",'
        b' "code": "llm_tokens", "timestamp": "1651240791.123",'
        b' "properties": {"tokens": 12.0, "model": "gpt-4"}, "ignored": 1}}',
    )
    assert response.status_code == 200
    event = response.json()["event"]
    assert set(event) == set(LAGO_EVENT_KEYS)
    assert event["timestamp"] == "2022-04-29T13:59:51.123Z"
    assert b'"tokens":12.0' in response.content  # the number keeps its text
    stored = http.get("/events/t-1")
    assert stored.status_code == 200
    assert b'"tokens":12.0' in stored.content
    assert stored.json()["event"]["timestamp"] == "2022-04-29T13:59:51.123Z"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1651240791, "2022-04-29T13:59:51.000Z"),
        (1651240791.5, "2022-04-29T13:59:51.500Z"),
        ("1651240791", "2022-04-29T13:59:51.000Z"),
    ],
)
def test_numeric_timestamps(http: httpx.Client, timestamp: Any, expected: str) -> None:
    response = http.post("/events", json={"event": _event("t-ts", timestamp=timestamp)})
    assert response.status_code == 200
    assert response.json()["event"]["timestamp"] == expected


def test_null_timestamp_and_properties_default(http: httpx.Client) -> None:
    response = http.post(
        "/events", json={"event": _event("t-null", timestamp=None, properties=None)}
    )
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["properties"] == {}
    assert event["timestamp"].endswith("Z")
    assert event["timestamp"][:10] == event["created_at"][:10]


@pytest.mark.parametrize("timestamp", ["2022-04-29T13:59:51Z", "soon", True, {"s": 1}])
def test_invalid_timestamp(http: httpx.Client, timestamp: Any) -> None:
    response = http.post("/events", json={"event": _event("t-bad", timestamp=timestamp)})
    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"timestamp": ["invalid_format"]},
    }
    assert http.get("/events/t-bad").status_code == 404


def test_mandatory_fields_reported_together(http: httpx.Client) -> None:
    response = http.post(
        "/events", json={"event": {"external_subscription_id": "sub-1", "timestamp": "x"}}
    )
    assert response.status_code == 422
    assert response.json()["error_details"] == {
        "transaction_id": ["value_is_mandatory"],
        "code": ["value_is_mandatory"],
        "timestamp": ["invalid_format"],
    }


def test_missing_root_is_400(http: httpx.Client) -> None:
    response = http.post("/events", json={"transaction_id": "t"})
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "BadRequest: param is missing or the value is empty or invalid: event",
    }


def test_unknown_code_and_subscription_are_accepted(http: httpx.Client) -> None:
    body = {"event": {"transaction_id": "t-x", "external_subscription_id": "nope", "code": "?"}}
    response = http.post("/events", json=body)
    assert response.status_code == 200
    assert response.json()["event"]["code"] == "?"


def test_duplicate_is_422_and_first_copy_kept(http: httpx.Client, lago: Client) -> None:
    first = http.post("/events", json={"event": _event("t-dup", properties={"tokens": 1})})
    assert first.status_code == 200
    with pytest.raises(LagoApiError) as error:
        lago.events.create(
            Event(
                transaction_id="t-dup",
                external_subscription_id="sub-1",
                code="llm_tokens",
                properties={"tokens": 2},
            )
        )
    assert error.value.status_code == 422
    assert error.value.response == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"transaction_id": ["value_already_exist"]},
    }
    stored = http.get("/events/t-dup").json()["event"]
    assert stored["lago_id"] == first.json()["event"]["lago_id"]
    assert stored["properties"] == {"tokens": 1}


def test_same_transaction_under_another_subscription_is_accepted(http: httpx.Client) -> None:
    assert http.post("/events", json={"event": _event("t-s")}).status_code == 200
    other = {**_event("t-s"), "external_subscription_id": "sub-2"}
    assert http.post("/events", json={"event": other}).status_code == 200
    found = http.get("/events/t-s", params={"external_subscription_id": "sub-2"})
    assert found.json()["event"]["external_subscription_id"] == "sub-2"


def test_unknown_event_is_404(lago: Client) -> None:
    with pytest.raises(LagoApiError) as error:
        lago.events.find("never")
    assert error.value.status_code == 404
    assert error.value.response == {"status": 404, "error": "Not Found", "code": "event_not_found"}


def test_batch_stores_every_event(http: httpx.Client, lago: Client) -> None:
    lago.events.batch_create(
        BatchEvent(
            events=[
                Event(transaction_id=f"b-{i}", external_subscription_id="sub-1", code="c")
                for i in range(3)
            ]
        )
    )
    for i in range(3):
        assert http.get(f"/events/b-{i}").status_code == 200


def test_batch_response_body(http: httpx.Client) -> None:
    response = http.post("/events/batch", json={"events": [_event("b-1"), _event("b-2")]})
    assert response.status_code == 200
    assert [e["transaction_id"] for e in response.json()["events"]] == ["b-1", "b-2"]


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ([], "no_events"),
        (None, "no_events"),
        ([_event(f"m-{i}") for i in range(101)], "too_many_events"),
    ],
)
def test_batch_size_limits(http: httpx.Client, events: Any, code: str) -> None:
    response = http.post("/events/batch", json={"events": events})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"events": [code]}


def test_batch_of_exactly_100_is_accepted(http: httpx.Client) -> None:
    response = http.post("/events/batch", json={"events": [_event(f"h-{i}") for i in range(100)]})
    assert response.status_code == 200
    assert len(response.json()["events"]) == 100


def test_batch_duplicate_inside_the_batch_stores_nothing(http: httpx.Client) -> None:
    events = [_event("d-1"), _event("d-2"), _event("d-1"), _event("d-3", timestamp="bad")]
    response = http.post("/events/batch", json={"events": events})
    assert response.status_code == 422
    assert response.json()["error_details"] == {
        "2": {"transaction_id": ["value_already_exist"]},
        "3": {"timestamp": ["invalid_format"]},
    }
    for transaction_id in ("d-1", "d-2", "d-3"):
        assert http.get(f"/events/{transaction_id}").status_code == 404


def test_batch_duplicate_of_a_stored_event_stores_nothing(http: httpx.Client) -> None:
    assert http.post("/events", json={"event": _event("s-1")}).status_code == 200
    response = http.post("/events/batch", json={"events": [_event("s-2"), _event("s-1")]})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert http.get("/events/s-2").status_code == 404


def test_batch_with_a_malformed_item(http: httpx.Client) -> None:
    response = http.post("/events/batch", json={"events": [_event("ok"), "nope"]})
    assert response.status_code == 422
    assert response.json()["error_details"] == {"1": {"event": ["value_is_invalid"]}}
    assert http.get("/events/ok").status_code == 404


def test_events_need_the_admin_key(admin_gateway: AdminGateway) -> None:
    response = httpx.post(
        f"{admin_gateway.api_url.rstrip('/')}/api/v1/events", json={"event": _event("t")}
    )
    assert response.status_code == 401
