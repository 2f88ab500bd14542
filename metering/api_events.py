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
from typing import Any, cast

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
    try:
        return _EPOCH + timedelta(0, 0, _micros(value))
    except OverflowError:
        raise ValueError("timestamp out of range") from None


def _micros(value: Any) -> int:
    """Unix seconds as integer microseconds (half-even); ValueError unless numeric."""
    # The API decoder yields Decimal for JSON fractions and int for whole numbers: exact type
    # tests first (bool is an int subclass, so it must never reach the int shortcut).
    kind = type(value)
    if kind is int:
        return value * 1_000_000  # type: ignore[no-any-return]
    seconds: Decimal
    if kind is Decimal:
        seconds = value
    elif isinstance(value, bool):
        raise ValueError("timestamp must be Unix seconds")
    elif isinstance(value, int):
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
        return int(seconds.quantize(_MICRO, ROUND_HALF_EVEN).scaleb(6))
    except InvalidOperation:
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


def _parse(raw: Any, *, id: str, now: datetime) -> tuple[Event | None, dict[str, list[str]]]:
    """One pass over an event input: its record, or ``None`` with every issue found."""
    # JSON objects decode to dict: test that first, the ABC check costs a few microseconds.
    if type(raw) is not dict and not isinstance(raw, Mapping):
        return None, {"event": ["value_is_invalid"]}
    issues: dict[str, list[str]] = {}
    transaction_id = _identifier(raw.get("transaction_id"))
    if transaction_id is None:
        issues["transaction_id"] = ["value_is_mandatory"]
    code = _identifier(raw.get("code"))
    if code is None:
        issues["code"] = ["value_is_mandatory"]
    subscription = raw.get("external_subscription_id")
    subscription_id = None if subscription is None else _identifier(subscription)
    if subscription is not None and subscription_id is None:
        issues["external_subscription_id"] = ["value_is_invalid"]
    timestamp = now
    try:
        timestamp = parse_timestamp(raw.get("timestamp"), received_at=now)
    except ValueError:
        issues["timestamp"] = ["invalid_format"]
    properties = raw.get("properties")
    if (
        properties is not None
        and type(properties) is not dict
        and not isinstance(properties, Mapping)
    ):
        issues["properties"] = ["value_is_invalid"]
    amount = None
    try:
        amount = _amount_text(raw.get("precise_total_amount_cents"))
    except ValueError:
        issues["precise_total_amount_cents"] = ["value_is_invalid"]
    if issues:
        return None, issues
    event = Event(
        id=id,
        transaction_id=transaction_id or "",
        external_subscription_id=subscription_id or "",
        code=code or "",
        timestamp=timestamp,
        properties=dict(properties) if properties is not None else {},
        created_at=now,
        precise_total_amount_cents=amount,
    )
    return event, issues


def _plain(raw: Any, id: str, now: datetime) -> Event | None:
    """The record of an input in the shape clients send, or ``None`` to take :func:`_parse`.

    The common case only (a dict, text identifiers, a dict or no properties, no amount, a
    timestamp that is absent, an int or a JSON fraction): the same record as :func:`_parse`
    at about half its cost, since the batch API runs this for every event. Anything else,
    valid or not, goes the general way, which alone decides what is an issue.
    """
    if type(raw) is not dict:
        return None
    get = raw.get
    transaction_id = get("transaction_id")
    code = get("code")
    subscription = get("external_subscription_id")
    properties = get("properties")
    if (
        type(transaction_id) is not str
        or type(code) is not str
        or not transaction_id.strip()
        or not code.strip()
        or get("precise_total_amount_cents") is not None
    ):
        return None
    if subscription is None:
        subscription = ""
    elif type(subscription) is not str or not subscription.strip():
        return None
    if properties is None:
        properties = {}
    elif type(properties) is dict:
        properties = properties.copy()
    else:
        return None
    value = get("timestamp")
    kind = type(value)
    if value is None:
        timestamp = now
    elif kind is int or kind is Decimal:
        try:
            timestamp = parse_timestamp(value, received_at=now)
        except ValueError:
            return None
    else:
        return None
    return Event(
        id=id,
        transaction_id=transaction_id,
        external_subscription_id=subscription,
        code=code,
        timestamp=timestamp,
        properties=properties,
        created_at=now,
        precise_total_amount_cents=None,
    )


def validate_event(raw: Any) -> dict[str, list[str]]:
    """Every problem of one event input, Lago-style; empty when the event is acceptable."""
    return _parse(raw, id="", now=_EPOCH)[1]


def _batch_shape(raw: Any) -> dict[str, Any]:
    if raw is None or (isinstance(raw, list) and not raw):
        return {"events": ["no_events"]}
    if not isinstance(raw, list):
        return {"events": ["value_is_invalid"]}
    if len(raw) > MAX_BATCH_EVENTS:
        return {"events": ["too_many_events"]}
    return {}


def _parse_batch(
    raw: Any, *, ids: Sequence[str], now: datetime
) -> tuple[tuple[Event, ...], dict[str, Any]]:
    """One pass over a batch: its records, or ``()`` with every issue keyed by index."""
    issues = _batch_shape(raw)
    if issues:
        return (), issues
    if len(ids) < len(raw):
        raise ValueError("one id per event is needed")
    events: list[Event] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw):
        event, found = _parse(item, id=ids[index], now=now)
        if event is not None:
            identity = (event.external_subscription_id, event.transaction_id)
            if identity in seen:
                found = {"transaction_id": ["value_already_exist"]}
            seen.add(identity)
            events.append(event)
        if found:
            issues[str(index)] = found
    return (() if issues else tuple(events)), issues


def validate_batch(raw: Any) -> dict[str, Any]:
    """Every problem of a batch: ``{"events": [...]}`` or ``{"<index>": {field: [codes]}}``.

    A repeat of an earlier event of the batch (same subscription and transaction id) is a
    ``value_already_exist`` on the later one: the first occurrence wins.
    """
    count = len(raw) if isinstance(raw, list) else 0
    return _parse_batch(raw, ids=[""] * count, now=_EPOCH)[1]


def build_event(raw: Mapping[str, Any], *, id: str, now: datetime) -> Event:
    """The record of a valid event input received at ``now`` (ValidationFailed otherwise)."""
    event, issues = _parse(raw, id=id, now=now)
    if event is None:
        raise ValidationFailed(issues)
    return event


def build_events(raw: Any, *, ids: Sequence[str], now: datetime) -> tuple[Event, ...]:
    """The records of a valid batch, in order (ValidationFailed with every issue otherwise).

    Validation and building are one pass: the batch API's hot path reads each input once.
    """
    if type(raw) is list and 0 < len(raw) <= MAX_BATCH_EVENTS and len(ids) >= len(raw):
        plain = [_plain(item, ids[index], now) for index, item in enumerate(raw)]
        if None not in plain:
            events = cast("list[Event]", plain)
            identities = {(e.external_subscription_id, e.transaction_id) for e in events}
            if len(identities) == len(events):
                return tuple(events)
    # Something is unusual or wrong: the general pass builds the batch or lists every issue.
    events_, issues = _parse_batch(raw, ids=ids, now=now)
    if issues:
        raise ValidationFailed(issues)
    return events_
