"""Encoding shared by the adapters: integer-microsecond timestamps and msgspec JSON blobs.

Numbers inside free-form JSON (event properties, charge properties) are written as JSON numbers
and read back as ``Decimal`` so their text survives a round trip exactly (``1.10`` stays
``1.10``, which matters because Lago compares property values as text).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import msgspec

from metering.models import Event
from metering.values import json_int

__all__ = [
    "EventRow",
    "JsonCodec",
    "Row",
    "event_from_row",
    "event_row",
    "from_micros",
    "lenient_properties",
    "to_micros",
]

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch (UTC); a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # timedelta floor division is exact integer arithmetic, unlike datetime.timestamp().
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


class JsonCodec:
    """msgspec JSON encoding of records and properties, with Decimal-preserving numbers."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder(decimal_format="number")
        self._properties = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}

    def encode(self, value: Any) -> bytes:
        """JSON bytes of a record, a properties dict or any msgspec-encodable value."""
        return self._encoder.encode(value)

    def encode_text(self, value: Any) -> str:
        """Like :meth:`encode`, as text (for TEXT columns that SQL may inspect)."""
        return self._encoder.encode(value).decode()

    def decode(self, data: bytes | str, kind: type[T]) -> T:
        """A value of type ``kind`` from JSON produced by :meth:`encode`."""
        decoder = self._decoders.get(kind)
        if decoder is None:
            decoder = msgspec.json.Decoder(kind, float_hook=Decimal)
            self._decoders[kind] = decoder
        result: T = decoder.decode(data)
        return result

    def decode_properties(self, data: bytes | str) -> dict[str, Any]:
        """An event's properties dict from its stored JSON.

        Text this code never writes (an older version's, or another writer's) is read, never
        refused: ``NaN`` and ``Infinity`` become text, integers too long for msgspec become
        Decimals, and text that is not a JSON object reads as no properties (the event still
        counts as an event). Values outside the numeric domain are skipped by the readers.
        """
        try:
            return self._properties.decode(data)
        except msgspec.DecodeError:
            return lenient_properties(data)


def lenient_properties(data: bytes | str) -> dict[str, Any]:
    """Stored properties msgspec refused, read by the standard library's parser
    (see :meth:`JsonCodec.decode_properties`)."""
    try:
        value = json.loads(data, parse_float=Decimal, parse_int=json_int, parse_constant=str)
    except (ValueError, RecursionError):  # not JSON at all, or nested past the parser
        return {}
    return value if isinstance(value, dict) else {}


#: An event as both adapters store it: (transaction_id, external_subscription_id, code,
#: timestamp us, created_at us, id, properties JSON, precise_total_amount_cents).
EventRow = tuple[str, str, str, int, int, str, str, str | None]


def event_row(event: Event, codec: JsonCodec) -> EventRow:
    """The stored columns of one event (encoded before any transaction starts)."""
    return (
        event.transaction_id,
        event.external_subscription_id,
        event.code,
        to_micros(event.timestamp),
        to_micros(event.created_at),
        event.id,
        codec.encode_text(event.properties),
        event.precise_total_amount_cents,
    )


class Row(Protocol):
    """A selected row by position: a tuple, or a driver's record type."""

    def __getitem__(self, index: int, /) -> Any:
        """The column at ``index``."""


def event_from_row(row: Row, codec: JsonCodec) -> Event:
    """The event of a row selected as (id, transaction_id, external_subscription_id, code,
    ts, properties, created_us, precise_total_amount_cents)."""
    return Event(
        id=row[0],
        transaction_id=row[1],
        external_subscription_id=row[2],
        code=row[3],
        timestamp=from_micros(row[4]),
        properties=codec.decode_properties(row[5]),
        created_at=from_micros(row[6]),
        precise_total_amount_cents=row[7],
    )
