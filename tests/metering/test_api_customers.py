"""Pure rules of the customer upsert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metering.api_customers import build_customer, valid_timezone, validate_customer
from metering.errors import ValidationFailed

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T1 = datetime(2025, 2, 1, tzinfo=UTC)


def test_timezones() -> None:
    assert valid_timezone("Europe/Paris")
    assert valid_timezone("UTC")
    assert not valid_timezone("Mars/Olympus")
    assert not valid_timezone("+02:00")


def test_validate_collects_every_issue() -> None:
    assert validate_customer(
        {"timezone": "nowhere", "currency": "usd", "name": 3, "email": ["x"]}
    ) == {
        "external_id": ["value_is_mandatory"],
        "timezone": ["invalid_timezone"],
        "currency": ["value_is_invalid"],
        "name": ["value_is_invalid"],
        "email": ["value_is_invalid"],
    }
    assert validate_customer({"external_id": "c", "timezone": None, "currency": "JPY"}) == {}


def test_create_then_update_only_given_fields() -> None:
    created = build_customer(
        {"external_id": "c", "name": "Acme", "timezone": "Asia/Tokyo"},
        existing=None,
        id="id-1",
        now=T0,
        sequential_id=7,
    )
    assert (created.id, created.sequential_id, created.created_at) == ("id-1", 7, T0)
    assert (created.name, created.timezone, created.currency) == ("Acme", "Asia/Tokyo", None)
    updated = build_customer(
        {"external_id": "c", "currency": "EUR", "name": None},
        existing=created,
        id="ignored",
        now=T1,
        sequential_id=99,
    )
    assert (updated.id, updated.sequential_id, updated.created_at) == ("id-1", 7, T0)
    assert updated.updated_at == T1
    assert (updated.name, updated.timezone, updated.currency) == (None, "Asia/Tokyo", "EUR")


def test_build_refuses_invalid_input() -> None:
    with pytest.raises(ValidationFailed) as error:
        build_customer({"external_id": ""}, existing=None, id="i", now=T0, sequential_id=1)
    assert error.value.issues == {"external_id": ["value_is_mandatory"]}


@pytest.mark.parametrize(
    ("currency", "ok"), [("USD", True), ("JPY", True), ("XYZ", False), ("usd", False), (1, False)]
)
def test_currency_is_iso_4217(currency: object, ok: bool) -> None:
    issues = validate_customer({"external_id": "c", "currency": currency})
    assert (issues == {}) is ok
