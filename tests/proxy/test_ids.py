"""Request ids: UUIDv7 in hex, ordered by time, unique."""

from __future__ import annotations

import re
import time
import uuid

from proxy.ids import new_request_id


def test_request_id_is_a_uuid7_in_hex_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    request_id = new_request_id()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"req_[0-9a-f]{32}", request_id)
    value = uuid.UUID(request_id.removeprefix("req_"))
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    assert first < second


def test_ids_are_unique() -> None:
    ids = {new_request_id() for _ in range(20_000)}
    assert len(ids) == 20_000
