"""Contract: event writes (idempotency, batch atomicity, group commit) and event reads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metering.errors import NotFound
from metering.models import Event
from metering.ports import BatchResult, DuplicatePolicy, EventBatch, Store
from tests.metering.store.builders import at, event

REJECT = DuplicatePolicy.REJECT
SKIP = DuplicatePolicy.SKIP


def batch(*events: Event, policy: DuplicatePolicy = REJECT) -> EventBatch:
    return EventBatch(events=events, policy=policy)


async def stored_ids(store: Store, sub: str = "sub_1", code: str = "llm_tokens") -> list[str]:
    found = await store.list_events(
        external_subscription_id=sub, code=code, from_ts=None, to_ts=at(days=365)
    )
    return [e.transaction_id for e in found]


async def test_event_round_trip(store: Store) -> None:
    original = event(
        "t1",
        ts=at(microseconds=123457),
        properties={"model": "gpt-4o", "tokens": Decimal("1.10"), "n": 7, "ok": True, "x": None},
    )
    assert await store.write_batches([batch(original)]) == [BatchResult(stored=True, inserted=1)]
    got = await store.get_event(transaction_id="t1", external_subscription_id="sub_1")
    assert got == original
    assert str(got.properties["tokens"]) == "1.10"  # the text survives, trailing zero included
    assert await store.get_event(transaction_id="t1") == original


async def test_get_event_not_found(store: Store) -> None:
    await store.write_batches([batch(event("t1"))])
    with pytest.raises(NotFound) as caught:
        await store.get_event(transaction_id="t1", external_subscription_id="sub_2")
    assert caught.value.code == "event_not_found"
    with pytest.raises(NotFound):
        await store.get_event(transaction_id="t2")


async def test_duplicate_of_stored_event_rejects_whole_batch(store: Store) -> None:
    await store.write_batches([batch(event("t1"))])
    results = await store.write_batches([batch(event("t2"), event("t1"), event("t3"))])
    assert results == [BatchResult(stored=False, inserted=0, duplicates=(1,))]
    assert await stored_ids(store) == ["t1"]


async def test_duplicate_inside_batch_first_occurrence_wins(store: Store) -> None:
    first = event("t1", properties={"tokens": 1})
    again = event("t1", properties={"tokens": 2})
    results = await store.write_batches([batch(first, event("t2"), again, again)])
    assert results == [BatchResult(stored=False, inserted=0, duplicates=(2, 3))]
    assert await stored_ids(store) == []
    # SKIP keeps the first copy and reports the later ones.
    results = await store.write_batches([batch(first, event("t2"), again, policy=SKIP)])
    assert results == [BatchResult(stored=True, inserted=2, duplicates=(2,))]
    stored = await store.get_event(transaction_id="t1", external_subscription_id="sub_1")
    assert stored.properties["tokens"] == 1


async def test_same_transaction_id_under_another_subscription_is_accepted(store: Store) -> None:
    results = await store.write_batches(
        [batch(event("t1", sub="sub_1")), batch(event("t1", sub="sub_2"))]
    )
    assert results == [BatchResult(stored=True, inserted=1)] * 2
    assert await stored_ids(store, "sub_2") == ["t1"]
    # Without a subscription, the first stored event with that transaction id answers.
    assert (await store.get_event(transaction_id="t1")).external_subscription_id == "sub_1"


async def test_skip_stores_the_rest_and_is_a_no_op_on_replay(store: Store) -> None:
    await store.write_batches([batch(event("t1"))])
    results = await store.write_batches([batch(event("t1"), event("t2"), policy=SKIP)])
    assert results == [BatchResult(stored=True, inserted=1, duplicates=(0,))]
    replay = await store.write_batches([batch(event("t1"), event("t2"), policy=SKIP)])
    assert replay == [BatchResult(stored=True, inserted=0, duplicates=(0, 1))]
    assert await stored_ids(store) == ["t1", "t2"]


async def test_one_rejected_batch_leaves_the_others_of_the_transaction(store: Store) -> None:
    await store.write_batches([batch(event("dup"))])
    results = await store.write_batches(
        [
            batch(event("a1"), event("a2")),
            batch(event("b1"), event("dup"), event("b2")),  # rejected
            batch(event("dup"), event("c1"), policy=SKIP),
            batch(event("b1")),  # b1 was rolled back with its batch: free again
            batch(),
        ]
    )
    assert results == [
        BatchResult(stored=True, inserted=2),
        BatchResult(stored=False, inserted=0, duplicates=(1,)),
        BatchResult(stored=True, inserted=1, duplicates=(0,)),
        BatchResult(stored=True, inserted=1),
        BatchResult(stored=True, inserted=0),
    ]
    assert sorted(await stored_ids(store)) == ["a1", "a2", "b1", "c1", "dup"]


async def test_duplicate_across_batches_of_one_call(store: Store) -> None:
    results = await store.write_batches([batch(event("t1")), batch(event("t1"))])
    assert results == [
        BatchResult(stored=True, inserted=1),
        BatchResult(stored=False, inserted=0, duplicates=(0,)),
    ]


async def test_write_no_batches(store: Store) -> None:
    assert await store.write_batches([]) == []


async def test_large_batch(store: Store) -> None:
    events = [event(f"t{n}", ts=at(seconds=n)) for n in range(1200)]
    events.append(event("t7"))
    results = await store.write_batches([batch(*events, policy=SKIP)])
    assert results == [BatchResult(stored=True, inserted=1200, duplicates=(1200,))]
    rejected = await store.write_batches([batch(event("new"), *events[:3])])
    assert rejected == [BatchResult(stored=False, inserted=0, duplicates=(1, 2, 3))]
    assert len(await stored_ids(store)) == 1200


async def test_list_events_order_and_inclusive_bounds(store: Store) -> None:
    events = [
        event("late", ts=at(hours=2)),
        event("b", ts=at(hours=1), created_at=at(hours=3)),
        event("a", ts=at(hours=1), created_at=at(hours=2)),
        event("before", ts=at(microseconds=-1)),
        event("first", ts=at()),
        event("last", ts=at(hours=2, microseconds=1)),
        event("other-code", ts=at(hours=1), code="other"),
        event("other-sub", ts=at(hours=1), sub="sub_2"),
    ]
    await store.write_batches([batch(*events)])
    found = await store.list_events(
        external_subscription_id="sub_1", code="llm_tokens", from_ts=at(), to_ts=at(hours=2)
    )
    assert [e.transaction_id for e in found] == ["first", "a", "b", "late"]
    unbounded = await store.list_events(
        external_subscription_id="sub_1", code="llm_tokens", from_ts=None, to_ts=at(hours=1)
    )
    assert [e.transaction_id for e in unbounded] == ["before", "first", "a", "b"]
