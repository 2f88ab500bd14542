"""The numeric domain and the text limits: their exact edges, on both ingestion paths."""

from __future__ import annotations

import decimal
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from metering.api_events import build_decoded_events, build_events, decode_batch
from metering.errors import ValidationFailed
from metering.event_limits import MAX_TEXT, number_issue, property_issues, text_issue
from metering.rounding import exact
from metering.values import in_domain, numeric_value, property_text

NOW = datetime(2025, 6, 1, tzinfo=UTC)
OUT = "value_is_out_of_range"
INVALID = "value_is_invalid"
TOO_LONG = "value_is_too_long"


@pytest.mark.parametrize(
    ("value", "issue"),
    [
        (10**20 - 1, None),
        (-(10**20) + 1, None),
        (10**20, OUT),
        (Decimal("99999999999999999999.99999999999999999999"), None),
        (Decimal("1E+19"), None),
        (Decimal("1E+20"), OUT),
        (Decimal("0.00000000000000000001"), None),
        (Decimal("0.000000000000000000001"), OUT),
        (Decimal("1.000000000000000000000"), OUT),  # 21 places as written
        (Decimal("1E+1000000"), OUT),
        (Decimal("1E+309"), OUT),
        (Decimal("-1E+400"), OUT),
        (Decimal("1E-400"), OUT),
        (10**400, OUT),
        ("1" * 21, OUT),
        ("1e400", OUT),
        ("NaN", INVALID),
        ("nan", INVALID),
        ("-Infinity", INVALID),
        ("inf", INVALID),
        ("sNaN", INVALID),
        ("12.5", None),
        ("1e5", None),  # in the domain; Lago's rule simply never aggregates it
        ("input", None),
        ("gpt-4o", None),
        (True, None),
        (1.5, None),
    ],
)
def test_number_issue(value: Any, issue: str | None) -> None:
    assert number_issue(value) == issue


def test_values_outside_the_domain_never_count() -> None:
    assert numeric_value(10**20 - 1) == 10**20 - 1
    for value in (10**20, Decimal("1E+309"), "1" * 21, Decimal("1E-400"), "NaN"):
        assert numeric_value(value) is None
    # Rendering never builds a gigabyte of digits, and nested decimals render as text.
    assert property_text(Decimal("1E+999999999")) == "1E+999999999"
    assert property_text([Decimal("1.50"), {"a": 1}]) == '[1.50, {"a": 1}]'


def test_the_largest_charge_stays_exact() -> None:
    largest = Decimal("9" * 20 + "." + "9" * 20)
    assert in_domain(largest)
    assert not in_domain(largest + Decimal("1E-20"))
    # 2**63 events at the largest value, priced with 40 significant digits.
    price = Decimal("1234567890.123456789012345678901234567890")
    with exact() as ctx:
        ctx.clear_flags()  # the local context starts with a copy of the thread's flags
        amount = largest * 2**63 * price
        assert not ctx.flags[decimal.Inexact]
        assert amount / price == largest * 2**63


def test_text_limits() -> None:
    assert text_issue("x" * MAX_TEXT) is None
    assert text_issue("x" * (MAX_TEXT + 1)) == TOO_LONG
    assert text_issue("é" * MAX_TEXT) is None
    assert text_issue("a\x00") == INVALID
    assert text_issue("a\ud800") == INVALID
    assert text_issue("\U0001f600") is None
    assert property_issues({"x" * 256: 1, "\x00": 2, "ok": "a\x00", "n": [{"k": "NaN"}]}) == {
        "properties": [TOO_LONG, INVALID],
        "properties.ok": [INVALID],
        "properties.n": [INVALID],
    }
    assert property_issues({"n": ["x" * 200, "y" * 200]}) == {"properties.n": [TOO_LONG]}


BAD_EVENTS = [
    ({"properties": {"tokens": Decimal("1E+1000000")}}, {"properties.tokens": [OUT]}),
    ({"properties": {"tokens": "Infinity"}}, {"properties.tokens": [INVALID]}),
    ({"transaction_id": "a\x00"}, {"transaction_id": [INVALID]}),
    ({"external_subscription_id": "s" * 256}, {"external_subscription_id": [TOO_LONG]}),
    ({"code": "c" * 256}, {"code": [TOO_LONG]}),
    ({"precise_total_amount_cents": Decimal("1E+30")}, {"precise_total_amount_cents": [OUT]}),
]


@pytest.mark.parametrize(("fields", "issues"), BAD_EVENTS)
def test_both_batch_paths_refuse_what_a_store_cannot_hold(
    fields: dict[str, Any], issues: dict[str, list[str]]
) -> None:
    good = {"transaction_id": "t0", "code": "c", "external_subscription_id": "s"}
    bad = {**good, "transaction_id": "t1", **fields}
    body = msgspec.json.Encoder(decimal_format="number").encode({"events": [good, bad]})
    inputs = decode_batch(body)
    assert inputs is not None  # the usual shape: the fast path's decoder takes it
    with pytest.raises(ValidationFailed) as fast:
        build_decoded_events(inputs, ids=["a", "b"], now=NOW)
    with pytest.raises(ValidationFailed) as general:
        build_events([good, bad], ids=["a", "b"], now=NOW)
    assert fast.value.issues == general.value.issues == {"1": issues}


def test_deeply_nested_values_render_and_are_checked_without_recursion() -> None:
    deep: list[Any] = []
    innermost = deep
    for _ in range(5000):  # deeper than Python's recursion limit
        innermost.append([])
        innermost = innermost[0]
    innermost.append(Decimal("1E+4000"))
    assert property_text(deep) == "[" * 5001 + "1E+4000" + "]" * 5001
    assert property_issues({"deep": deep}) == {"properties.deep": [OUT]}
