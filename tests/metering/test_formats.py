"""Lago's number and date formats (section 4)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.formats import (
    amount_to_cents,
    currency_exponent,
    format_date,
    format_datetime,
    format_timestamp_ms,
    format_units,
)
from tests.metering.builders import utc

D = Decimal


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("4", "4.0"),
        ("4.000", "4.0"),
        ("0.5", "0.5"),
        ("15250", "15250.0"),
        ("48.44", "48.44"),
        ("59352.0", "59352.0"),
        ("1E+3", "1000.0"),
        ("1E-7", "0.0000001"),
        ("0", "0.0"),
        ("0E-9", "0.0"),
        ("-0", "0.0"),
        ("-2.50", "-2.5"),
        ("123456789012345678901234567890.123", "123456789012345678901234567890.123"),
        ("0.02217741935483870968", "0.02217741935483870968"),
    ],
)
def test_units(value: str, text: str) -> None:
    assert format_units(D(value)) == text


@given(st.decimals(min_value=-(10**30), max_value=10**30, places=30))
def test_units_round_trip_and_match_the_openapi_shape(value: Decimal) -> None:
    text = format_units(value)
    assert "E" not in text
    assert "." in text
    assert D(text) == value


def test_units_reject_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        format_units(D("NaN"))


@pytest.mark.parametrize(
    ("amount", "currency", "cents"),
    [
        ("0.4575", "USD", 46),
        ("0.005", "USD", 1),  # half up
        ("0.00499", "USD", 0),
        ("0.015", "EUR", 2),
        ("3.84", "usd", 384),
        ("12.5", "JPY", 13),
        ("12.4", "JPY", 12),
        ("1.2345", "KWD", 1235),
        ("-0.005", "USD", -1),  # halves go away from zero, like Ruby
        ("0", "USD", 0),
    ],
)
def test_amount_to_cents(amount: str, currency: str, cents: int) -> None:
    assert amount_to_cents(D(amount), currency) == cents


def test_currency_exponents() -> None:
    assert [currency_exponent(c) for c in ("USD", "EUR", "JPY", "KRW", "BHD")] == [2, 2, 0, 0, 3]


def test_datetimes() -> None:
    end = utc(2022, 3, 31, 23, 59, 59, 999_999)
    assert format_datetime(end) == "2022-03-31T23:59:59Z"
    assert format_datetime(utc(2022, 3, 1)) == "2022-03-01T00:00:00Z"
    assert format_timestamp_ms(utc(2022, 3, 16)) == "2022-03-16T00:00:00.000Z"
    assert format_timestamp_ms(end) == "2022-03-31T23:59:59.999Z"
    shifted = datetime(2022, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_datetime(shifted) == "2022-03-01T04:00:00Z"
    assert format_date(date(2022, 7, 6)) == "2022-07-06"
    with pytest.raises(ValueError, match="aware"):
        format_datetime(datetime(2022, 3, 1))
