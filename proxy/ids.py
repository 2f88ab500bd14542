"""Request ids that sort by time, so the events' idempotency index grows at its right edge.

An event's transaction id is ``<request id>:<type>`` and the store's UNIQUE index on it decides
duplicates. With random ids (uuid4) every request's events land on a random leaf of that index:
a group commit of N requests dirties about N index pages, and once the index outgrows the page
cache each insert reads a page back first. Ids that start with the time land on the last leaf,
whatever the table's size. The id is a UUIDv7 (RFC 9562) in hex: 48 bits of Unix milliseconds,
then 74 random bits, so ids stay unique across processes and replicas without coordination.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_event_id", "new_request_id"]

_VERSION = 0x7 << 76  # the version nibble, bits 76-79 of the 128-bit value
_VARIANT = 0b10 << 62  # RFC 9562's variant, bits 62-63
_RAND_A = (1 << 12) - 1  # 12 random bits below the version nibble
_RAND_B = (1 << 62) - 1  # 62 random bits below the variant


def _uuid7() -> int:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10))
    return (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION
        | (rand >> 62 & _RAND_A) << 64
        | _VARIANT
        | rand & _RAND_B
    )


def new_request_id() -> str:
    """tallygate's id of one proxied request: ``req_`` + a UUIDv7 as 32 hex digits."""
    return f"req_{_uuid7():032x}"


def new_event_id() -> str:
    """The id of one usage event: a UUIDv7 in the canonical 8-4-4-4-12 form.

    Cheaper than ``str(uuid.uuid4())`` (no ``UUID`` object; bench/RESULTS.md) and, like the
    request ids, ordered by time.
    """
    text = f"{_uuid7():032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
