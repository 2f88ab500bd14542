"""Pure rules of event input: validation, timestamps, batch checks, record building."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.api_events import (
    MAX_BATCH_EVENTS,
    build_decoded_events,
    build_event,
    build_events,
    decode_batch,
    parse_timestamp,
    validate_batch,
    validate_event,
)
from metering.errors import ValidationFailed

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def _raw(transaction_id: str = "t", **extra: Any) -> dict[str, Any]:
    return {"transaction_id": transaction_id, "external_subscription_id": "s", "code": "c", **extra}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1651240791, datetime(2022, 4, 29, 13, 59, 51, tzinfo=UTC)),
        ("1651240791.123", datetime(2022, 4, 29, 13, 59, 51, 123000, tzinfo=UTC)),
        (Decimal("1651240791.5"), datetime(2022, 4, 29, 13, 59, 51, 500000, tzinfo=UTC)),
        (1651240791.25, datetime(2022, 4, 29, 13, 59, 51, 250000, tzinfo=UTC)),
        (" 1651240791 ", datetime(2022, 4, 29, 13, 59, 51, tzinfo=UTC)),
        (None, NOW),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime) -> None:
    assert parse_timestamp(value, received_at=NOW) == expected


@pytest.mark.parametrize(
    "value", ["2022-04-29T13:59:51Z", "", "abc", True, [], {}, "1e30", Decimal("NaN")]
)
def test_parse_timestamp_rejects(value: Any) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(value, received_at=NOW)


def test_validate_collects_every_issue() -> None:
    issues = validate_event(
        {
            "transaction_id": "  ",
            "timestamp": "now",
            "properties": [1],
            "precise_total_amount_cents": "x",
        }
    )
    assert issues == {
        "transaction_id": ["value_is_mandatory"],
        "code": ["value_is_mandatory"],
        "timestamp": ["invalid_format"],
        "properties": ["value_is_invalid"],
        "precise_total_amount_cents": ["value_is_invalid"],
    }


def test_valid_event_has_no_issue() -> None:
    assert validate_event(_raw(timestamp=None, properties=None)) == {}
    assert validate_event({"transaction_id": "t", "code": "c"}) == {}
    assert validate_event("event") == {"event": ["value_is_invalid"]}


def test_build_event_defaults() -> None:
    event = build_event(_raw(properties=None, extra="dropped"), id="e-1", now=NOW)
    assert event.id == "e-1"
    assert event.timestamp == NOW
    assert event.created_at == NOW
    assert event.properties == {}
    assert event.precise_total_amount_cents is None


def test_build_event_keeps_values() -> None:
    event = build_event(
        _raw(
            transaction_id=42,
            timestamp=1651240791,
            properties={"tokens": Decimal("12.0")},
            precise_total_amount_cents=Decimal("12.50"),
        ),
        id="e",
        now=NOW,
    )
    assert event.transaction_id == "42"
    assert event.properties == {"tokens": Decimal("12.0")}
    assert str(event.properties["tokens"]) == "12.0"
    assert event.precise_total_amount_cents == "12.50"


def test_build_event_refuses_invalid_input() -> None:
    with pytest.raises(ValidationFailed) as error:
        build_event({"code": "c"}, id="e", now=NOW)
    assert error.value.issues == {"transaction_id": ["value_is_mandatory"]}


def test_absent_subscription_is_accepted_as_empty() -> None:
    assert (
        build_event({"transaction_id": "t", "code": "c"}, id="e", now=NOW).external_subscription_id
        == ""
    )


@pytest.mark.parametrize(
    ("raw", "issues"),
    [
        (None, {"events": ["no_events"]}),
        ([], {"events": ["no_events"]}),
        ({"a": 1}, {"events": ["value_is_invalid"]}),
        ([_raw(f"t{i}") for i in range(MAX_BATCH_EVENTS + 1)], {"events": ["too_many_events"]}),
    ],
)
def test_batch_shape(raw: Any, issues: dict[str, Any]) -> None:
    assert validate_batch(raw) == issues


def test_batch_issues_by_index_first_occurrence_wins() -> None:
    raw = [
        _raw("a"),
        _raw("b", timestamp="bad"),
        _raw("a"),
        {**_raw("a"), "external_subscription_id": "other"},
        _raw("b"),
    ]
    assert validate_batch(raw) == {
        "1": {"timestamp": ["invalid_format"]},
        "2": {"transaction_id": ["value_already_exist"]},
    }


def test_build_events_in_order() -> None:
    events = build_events([_raw("a"), _raw("b")], ids=["1", "2"], now=NOW)
    assert [(e.id, e.transaction_id) for e in events] == [("1", "a"), ("2", "b")]
    assert (
        len(
            build_events(
                [_raw(f"t{i}") for i in range(100)], ids=[str(i) for i in range(100)], now=NOW
            )
        )
        == 100
    )
    with pytest.raises(ValidationFailed) as error:
        build_events([_raw("a"), _raw("a")], ids=["1", "2"], now=NOW)
    assert error.value.issues == {"1": {"transaction_id": ["value_already_exist"]}}


# Inputs as JSON decodes them (Decimal for fractions), usual and unusual: the batch path's
# shortcut for the usual shape must agree with the general rules on every one of them.
_numbers = (
    st.integers(-(2**63), 2**63 - 1)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    # At and beyond the numeric domain's edges (metering.values): a store cannot hold these.
    | st.sampled_from(
        [
            10**20 - 1,
            10**20,
            -(10**25),
            Decimal("1E+1000000"),
            Decimal("-1E+400"),
            Decimal("1E-400"),
            Decimal("1E-20"),
            Decimal("0.000000000000000000001"),
        ]
    )
)
# Text a store can and cannot hold (NUL, over-long); numeric text outside the domain.
_odd_text = st.sampled_from(
    ["a\x00b", "x" * 255, "x" * 256, "NaN", "-Infinity", "Inf ", "nan12", "input", "1e400", "7"]
)
_odd_ids = st.sampled_from([" ", "", None, True, 3, -1, "a\x00b", "x" * 255, "x" * 256])
_timestamps = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.decimals(allow_nan=False, allow_infinity=False, places=7).filter(lambda d: abs(d) < 10**11),
    st.sampled_from(["1651240791.5", "x", True, 1.5, Decimal("1E+3"), Decimal("-0.0000005")]),
)
_properties = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["a", "b", "x" * 256, "\x00"]), _numbers | _odd_text),
    st.dictionaries(st.just("nested"), st.lists(_numbers | _odd_text, max_size=2)),
    st.just([1]),
)
_usual = st.fixed_dictionaries(
    {
        "transaction_id": st.text(min_size=1, max_size=3) | _odd_ids,
        "code": st.just("c") | _odd_ids,
    },
    optional={
        "external_subscription_id": st.sampled_from(["s", "s2"]) | _odd_ids,
        "timestamp": _timestamps,
        "properties": _properties,
        "precise_total_amount_cents": st.sampled_from([None, Decimal("1.5"), "x", 3]),
    },
)
_inputs = _usual | st.sampled_from(["event", None, 3, {}])
# Valid events in the shapes clients send (duplicates happen when the ids collide).
_clean = st.fixed_dictionaries(
    {"transaction_id": st.text(min_size=1, max_size=2).filter(str.strip), "code": st.just("c")},
    optional={
        "external_subscription_id": st.sampled_from(["s", "s2", None]),
        "timestamp": st.none()
        | st.integers(0, 2 * 10**9)
        | st.decimals(0, 2 * 10**9, places=6)
        | st.decimals(0, 2 * 10**9, places=8),
        "properties": st.none() | st.dictionaries(st.sampled_from(["a", "b"]), _numbers),
        "precise_total_amount_cents": st.sampled_from([None, Decimal("1.5"), "2", 3]),
    },
)


@given(st.lists(_inputs, max_size=6) | st.lists(_clean, min_size=1, max_size=8))
def test_build_events_agrees_with_the_general_rules(raw: list[Any]) -> None:
    ids = [f"id-{i}" for i in range(len(raw))]
    issues = validate_batch(raw)
    if issues:
        with pytest.raises(ValidationFailed) as error:
            build_events(raw, ids=ids, now=NOW)
        assert error.value.issues == issues
        return
    events = build_events(raw, ids=ids, now=NOW)
    assert events == tuple(build_event(r, id=i, now=NOW) for r, i in zip(raw, ids, strict=True))


_ENCODE = msgspec.json.Encoder(decimal_format="number")
_GENERAL = msgspec.json.Decoder(float_hook=Decimal)


@given(
    st.lists(_inputs, max_size=6).map(lambda events: {"events": events})
    | st.lists(_clean, max_size=8).map(lambda events: {"events": events, "other": 1})
    | st.sampled_from([{}, {"events": None}, {"events": "x"}, {"events": {}}, [], 3])
)
def test_decoded_batches_agree_with_the_general_path(document: Any) -> None:
    body = _ENCODE.encode(document)
    general = _GENERAL.decode(body)
    raw = general.get("events") if isinstance(general, dict) else None
    inputs = decode_batch(body)
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        assert inputs is None  # the route takes the general path for such bodies
        return
    assert inputs is not None
    ids = [f"id-{i}" for i in range(len(raw))]
    issues = validate_batch(raw)
    if issues:
        with pytest.raises(ValidationFailed) as error:
            build_decoded_events(inputs, ids=ids, now=NOW)
        assert error.value.issues == issues
        return
    assert build_decoded_events(inputs, ids=ids, now=NOW) == build_events(raw, ids=ids, now=NOW)


def test_decode_batch_keeps_the_last_of_a_repeated_key() -> None:
    (item,) = decode_batch(b'{"events": [{"code": "a", "code": "b", "x": 1}]}') or []
    assert item.code == "b"
    assert decode_batch(b"not json") is None
    assert decode_batch(b'{"events": [1]}') is None


def test_build_events_copies_properties() -> None:
    properties = {"tokens": 1}
    (event,) = build_events([_raw(properties=properties)], ids=["e"], now=NOW)
    properties["tokens"] = 2
    assert event.properties == {"tokens": 1}
