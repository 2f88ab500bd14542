"""Lago's event input rules (reference/lago-semantics.md section 6), without HTTP or clock.

Validation is minimal on purpose: ``transaction_id`` and ``code`` are mandatory and the
timestamp must be numeric Unix seconds; anything else (unknown code or subscription, odd
properties) is accepted and simply never aggregates. :func:`validate_event` and
:func:`validate_batch` collect every issue at once in Lago's ``{field: [codes]}`` form;
:func:`build_event` turns a valid input into a record with the id and "now" it is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from metering.errors import ValidationFailed
from metering.models import Event

__all__ = [
    "MAX_BATCH_EVENTS",
    "build_event",
    "build_events",
    "parse_timestamp",
    "validate_batch",
    "validate_event",
]

#: Lago's ``LAGO_EVENTS_BATCH_MAX_LENGTH``.
MAX_BATCH_EVENTS = 100

# What Ruby's Float() accepts in practice: an optionally signed decimal, maybe with exponent.
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = Decimal("0.000001")


class _Invalid(Exception):
    """A timestamp that is not Unix seconds."""


def parse_timestamp(value: Any, *, received_at: datetime) -> datetime:
    """Unix seconds (int, float, Decimal or numeric text) as UTC; ``None`` -> ``received_at``.

    Sub-second precision is kept to the microsecond. Raises ValueError for anything else
    (booleans, ISO strings, out-of-range values).
    """
    if value is None:
        return received_at
    if isinstance(value, bool):
        raise ValueError("timestamp must be Unix seconds")
    seconds: Decimal
    if isinstance(value, int):
        seconds = Decimal(value)
    elif isinstance(value, float):
        seconds = Decimal(repr(value))
    elif isinstance(value, Decimal):
        seconds = value
    elif isinstance(value, str) and _NUMBER.fullmatch(value):
        try:
            seconds = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError("timestamp must be Unix seconds") from None
    else:
        raise ValueError("timestamp must be Unix seconds")
    if not seconds.is_finite():
        raise ValueError("timestamp must be finite")
    try:
        micros = int(seconds.quantize(_MICRO, rounding=ROUND_HALF_EVEN).scaleb(6))
        return _EPOCH + timedelta(microseconds=micros)
    except (OverflowError, InvalidOperation):
        raise ValueError("timestamp out of range") from None


def _identifier(value: Any) -> str | None:
    """A required identifier's text (numbers are accepted as their text); ``None`` if blank."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _amount_text(value: Any) -> str | None:
    """``precise_total_amount_cents`` as decimal text, ``None`` when absent; ValueError if bad."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int | Decimal):
        return format(Decimal(value), "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return value.strip()
    raise ValueError("not a number")


def validate_event(raw: Any) -> dict[str, list[str]]:
    """Every problem of one event input, Lago-style; empty when the event is acceptable."""
    if not isinstance(raw, Mapping):
        return {"event": ["value_is_invalid"]}
    issues: dict[str, list[str]] = {}
    for field in ("transaction_id", "code"):
        if _identifier(raw.get(field)) is None:
            issues[field] = ["value_is_mandatory"]
    subscription = raw.get("external_subscription_id")
    if subscription is not None and _identifier(subscription) is None:
        issues["external_subscription_id"] = ["value_is_invalid"]
    try:
        parse_timestamp(raw.get("timestamp"), received_at=_EPOCH)
    except ValueError:
        issues["timestamp"] = ["invalid_format"]
    properties = raw.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        issues["properties"] = ["value_is_invalid"]
    try:
        _amount_text(raw.get("precise_total_amount_cents"))
    except ValueError:
        issues["precise_total_amount_cents"] = ["value_is_invalid"]
    return issues


def _identity(raw: Mapping[str, Any]) -> tuple[str, str]:
    subscription = raw.get("external_subscription_id")
    return (_identifier(subscription) or "", _identifier(raw.get("transaction_id")) or "")


def validate_batch(raw: Any) -> dict[str, Any]:
    """Every problem of a batch: ``{"events": [...]}`` or ``{"<index>": {field: [codes]}}``.

    A repeat of an earlier event of the batch (same subscription and transaction id) is a
    ``value_already_exist`` on the later one: the first occurrence wins.
    """
    if raw is None or (isinstance(raw, list) and not raw):
        return {"events": ["no_events"]}
    if not isinstance(raw, list):
        return {"events": ["value_is_invalid"]}
    if len(raw) > MAX_BATCH_EVENTS:
        return {"events": ["too_many_events"]}
    issues: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw):
        found = validate_event(item)
        if not found:
            identity = _identity(item)
            if identity in seen:
                found = {"transaction_id": ["value_already_exist"]}
            seen.add(identity)
        if found:
            issues[str(index)] = found
    return issues


def build_event(raw: Mapping[str, Any], *, id: str, now: datetime) -> Event:
    """The record of a valid event input received at ``now`` (ValidationFailed otherwise)."""
    issues = validate_event(raw)
    if issues:
        raise ValidationFailed(issues)
    properties = raw.get("properties")
    return Event(
        id=id,
        transaction_id=_identifier(raw.get("transaction_id")) or "",
        external_subscription_id=_identifier(raw.get("external_subscription_id")) or "",
        code=_identifier(raw.get("code")) or "",
        timestamp=parse_timestamp(raw.get("timestamp"), received_at=now),
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        created_at=now,
        precise_total_amount_cents=_amount_text(raw.get("precise_total_amount_cents")),
    )


def build_events(raw: Any, *, ids: Sequence[str], now: datetime) -> tuple[Event, ...]:
    """The records of a valid batch, in order (ValidationFailed with every issue otherwise)."""
    issues = validate_batch(raw)
    if issues:
        raise ValidationFailed(issues)
    assert isinstance(raw, list)
    if len(ids) < len(raw):
        raise ValueError("one id per event is needed")
    return tuple(build_event(item, id=ids[i], now=now) for i, item in enumerate(raw))
