"""Lago's event object on the wire, cheaply: the batch API echoes every event it stores.

A 100-event batch answers 100 event objects, so building them is a large share of the batch
API's work on the event loop (bench/RESULTS.md). Events are encoded as msgspec Structs (field
order is the key order: the same JSON as the dict Lago's shape describes), with timestamps
formatted by hand from digit tables instead of ``datetime.isoformat`` plus string surgery.
New event ids come from pooled randomness: one ``os.urandom`` call per few thousand ids
rather than one per batch (each call releases and re-takes the GIL, which the store's
thread may be holding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from metering.formats import format_datetime, format_timestamp_ms
from metering.models import Event

__all__ = ["EventIds", "encode_event", "encode_events", "timestamp_ms"]

# Property values keep their text: 12.0 stays "12.0" (Lago compares values as text) and is
# written back as the JSON number it was.
_ENCODER = msgspec.json.Encoder(decimal_format="number")
_TWO = [f"{n:02d}" for n in range(60)]
_THREE = [f"{n:03d}" for n in range(1000)]
# A UUID's variant digit from a random hex digit: its two high bits set to 10 (RFC 4122).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _EventOut(msgspec.Struct, gc=False):
    """``lago-python-client``'s ``EventResponse``, keys in Lago's order.

    Not tracked by the garbage collector (no reference cycles possible): the collector's
    passes over a batch's short-lived objects cost the batch API more than encoding them.
    """

    lago_id: str
    transaction_id: str
    lago_customer_id: None
    lago_subscription_id: None
    external_subscription_id: str
    code: str
    timestamp: str
    precise_total_amount_cents: str | None
    properties: dict[str, Any]
    created_at: str


class _One(msgspec.Struct, gc=False):
    event: _EventOut


class _Many(msgspec.Struct, gc=False):
    events: list[_EventOut]


def timestamp_ms(moment: datetime) -> str:
    """What :func:`metering.formats.format_timestamp_ms` returns, at a third of its cost."""
    if moment.tzinfo is not UTC:
        return format_timestamp_ms(moment)
    two = _TWO
    return (
        f"{moment.year:04d}-{two[moment.month]}-{two[moment.day]}T{two[moment.hour]}:"
        f"{two[moment.minute]}:{two[moment.second]}.{_THREE[moment.microsecond // 1000]}Z"
    )


def _out(event: Event, created_at: str) -> _EventOut:
    return _EventOut(
        event.id,
        event.transaction_id,
        None,
        None,
        event.external_subscription_id,
        event.code,
        timestamp_ms(event.timestamp),
        event.precise_total_amount_cents,
        event.properties,
        created_at,
    )


def encode_event(event: Event) -> bytes:
    """``{"event": {...}}``: the answer to a single event's create or show."""
    return _ENCODER.encode(_One(_out(event, format_datetime(event.created_at))))


def encode_events(events: Sequence[Event]) -> bytes:
    """``{"events": [...]}``: the answer to a batch (its events share one creation time)."""
    created: dict[datetime, str] = {}
    out = []
    for event in events:
        text = created.get(event.created_at)
        if text is None:
            text = created[event.created_at] = format_datetime(event.created_at)
        out.append(_out(event, text))
    return _ENCODER.encode(_Many(out))


class EventIds:
    """Random (version 4) UUIDs as text, drawn from a pool of ``os.urandom`` bytes."""

    def __init__(self, pool: int = 4096) -> None:
        if pool < 1:
            raise ValueError("pool must be >= 1")
        self._pool = pool
        self._hex = ""
        self._next = 0
        # A forked child must not hand out its parent's remaining ids.
        os.register_at_fork(after_in_child=self._drop)

    def _drop(self) -> None:
        self._hex, self._next = "", 0

    def take(self, count: int) -> list[str]:
        """``count`` new ids."""
        ids = []
        for _ in range(count):
            if self._next >= len(self._hex):
                self._hex, self._next = os.urandom(16 * self._pool).hex(), 0
            at = self._next
            self._next = at + 32
            h = self._hex[at : at + 32]
            ids.append(  # version 4, the RFC 4122 variant
                f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"
            )
        return ids
