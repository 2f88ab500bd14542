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

import msgspec

from metering.errors import ValidationFailed
from metering.event_limits import number_issue, plain_text, property_issues, text_issue
from metering.models import Event

__all__ = [
    "MAX_BATCH_EVENTS",
    "EventInput",
    "build_decoded_events",
    "build_event",
    "build_events",
    "decode_batch",
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


def _check_identifier(issues: dict[str, list[str]], field: str, text: str | None) -> None:
    """Record why a store could not hold the identifier ``text`` (if it could not)."""
    if text is not None:
        issue = text_issue(text)
        if issue is not None:
            issues[field] = [issue]


def _amount_text(value: Any) -> str | None:
    """``precise_total_amount_cents`` as decimal text, ``None`` when absent; ValueError if bad,
    OverflowError if outside the numeric domain."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    if number_issue(value) == "value_is_out_of_range":
        raise OverflowError("outside the numeric domain")
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
    _check_identifier(issues, "transaction_id", transaction_id)
    code = _identifier(raw.get("code"))
    if code is None:
        issues["code"] = ["value_is_mandatory"]
    _check_identifier(issues, "code", code)
    subscription = raw.get("external_subscription_id")
    subscription_id = None if subscription is None else _identifier(subscription)
    if subscription is not None and subscription_id is None:
        issues["external_subscription_id"] = ["value_is_invalid"]
    _check_identifier(issues, "external_subscription_id", subscription_id)
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
    elif properties:
        issues.update(property_issues(properties))
    amount = None
    try:
        amount = _amount_text(raw.get("precise_total_amount_cents"))
    except OverflowError:
        issues["precise_total_amount_cents"] = ["value_is_out_of_range"]
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


class EventInput(msgspec.Struct, gc=False):
    """One event of a batch body as JSON has it (absent and null fields alike are ``None``).

    Not tracked by the garbage collector (it cannot be part of a reference cycle): a batch
    decodes into 100 of these instead of 100 dicts, and the collector's passes over the batch
    API's short-lived objects were a large share of its CPU (bench/RESULTS.md).
    """

    transaction_id: Any = None
    external_subscription_id: Any = None
    code: Any = None
    timestamp: Any = None
    properties: Any = None
    precise_total_amount_cents: Any = None


class _BatchInput(msgspec.Struct, gc=False):
    events: list[EventInput]


# Numbers keep their text: a property's 12.0 stays Decimal("12.0") (Lago compares values as
# text), and fractional timestamps convert exactly.
_BATCH_DECODER = msgspec.json.Decoder(_BatchInput, float_hook=Decimal)


def decode_batch(body: bytes) -> list[EventInput] | None:
    """The events of a ``{"events": [{...}, ...]}`` body; ``None`` for any other body.

    Other keys are ignored and a repeated key keeps its last value, as with a plain JSON
    decode. ``None`` leaves the body to the general path (decode, :func:`build_events`),
    which alone says what is wrong with it.
    """
    try:
        return _BATCH_DECODER.decode(body).events
    # Invalid JSON or another shape (ValidationError included), or nested past msgspec's bound.
    except (msgspec.DecodeError, RecursionError):
        return None


def _plain(item: EventInput, id: str, now: datetime) -> Event | None:
    """The record of an input in the shape clients send, or ``None`` to take :func:`_parse`.

    The common case only (text identifiers, a dict or no properties, no amount, a timestamp
    that is absent, an int or a JSON fraction, everything a store can hold): the same record
    as :func:`_parse` at a fraction of its cost, since the batch API runs this for every
    event. Anything else, valid or not, goes the general way, which alone decides what is an
    issue.
    """
    transaction_id = item.transaction_id
    code = item.code
    subscription = item.external_subscription_id
    properties = item.properties
    if (
        type(transaction_id) is not str
        or type(code) is not str
        or not transaction_id.strip()
        or not code.strip()
        or item.precise_total_amount_cents is not None
    ):
        return None
    if subscription is None:
        subscription = ""
    elif type(subscription) is not str or not subscription.strip() or not plain_text(subscription):
        return None
    if not plain_text(transaction_id) or not plain_text(code):
        return None
    if properties is None:
        properties = {}
    elif type(properties) is not dict or property_issues(properties):
        return None
    value = item.timestamp
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
        properties=properties,  # freshly decoded: the record may own it
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

    Validation and building are one pass over the inputs.
    """
    events, issues = _parse_batch(raw, ids=ids, now=now)
    if issues:
        raise ValidationFailed(issues)
    return events


def build_decoded_events(
    inputs: list[EventInput], *, ids: Sequence[str], now: datetime
) -> tuple[Event, ...]:
    """:func:`build_events` of a :func:`decode_batch` result: the same records or issues.

    Events in the usual shape are built without the general pass; a batch with anything
    unusual, wrong or repeated is handed to :func:`build_events` as the dicts it came from.
    """
    if 0 < len(inputs) <= MAX_BATCH_EVENTS and len(ids) >= len(inputs):
        events = []
        for index, item in enumerate(inputs):
            event = _plain(item, ids[index], now)
            if event is None:
                break
            events.append(event)
        else:
            identities = {(e.external_subscription_id, e.transaction_id) for e in events}
            if len(identities) == len(events):
                return tuple(events)
    # Something is unusual or wrong: the general pass builds the batch or lists every issue.
    return build_events([msgspec.structs.asdict(i) for i in inputs], ids=ids, now=now)
