"""Contract: records (metrics, plans, customers, subscriptions, keys) — CRUD, NotFound, Conflict."""

from __future__ import annotations

import msgspec
import pytest

from metering.errors import Conflict, NotFound
from metering.models import SubscriptionStatus
from metering.ports import Store
from tests.metering.store.builders import (
    api_key,
    at,
    customer,
    metric,
    plan,
    subscription,
)


async def test_metric_round_trip_by_id_and_code(store: Store) -> None:
    m = metric()
    await store.put_metric(m)
    assert await store.get_metric(id=m.id) == m
    assert await store.get_metric(code=m.code) == m
    assert await store.get_metric(id=m.id, code=m.code) == m


async def test_metric_missing_is_lago_not_found(store: Store) -> None:
    with pytest.raises(NotFound) as caught:
        await store.get_metric(code="nope")
    assert (caught.value.resource, caught.value.code) == (
        "billable_metric",
        "billable_metrics_not_found",
    )
    with pytest.raises(NotFound):
        await store.get_metric(id="nope")
    await store.put_metric(metric())
    with pytest.raises(NotFound):  # id and code given: they must designate the same metric
        await store.get_metric(id="bm-llm_tokens", code="other")


async def test_metric_replace_by_id_and_code_conflict(store: Store) -> None:
    await store.put_metric(metric("a", id="m1"))
    await store.put_metric(metric("b", id="m2"))
    renamed = metric("c", id="m1", name="renamed")
    await store.put_metric(renamed)
    assert await store.get_metric(id="m1") == renamed
    with pytest.raises(NotFound):
        await store.get_metric(code="a")
    with pytest.raises(Conflict) as caught:
        await store.put_metric(metric("b", id="m3"))
    assert caught.value.issues == {"code": ["value_already_exist"]}
    with pytest.raises(NotFound):
        await store.get_metric(id="m3")


async def test_metric_delete(store: Store) -> None:
    await store.put_metric(metric())
    await store.delete_metric("bm-llm_tokens")
    with pytest.raises(NotFound):
        await store.get_metric(code="llm_tokens")
    with pytest.raises(NotFound):
        await store.delete_metric("bm-llm_tokens")
    await store.put_metric(metric())  # the code is free again


async def test_list_metrics_pages_in_creation_order(store: Store) -> None:
    # Inserted out of creation order: the listing follows created_at.
    for n in (3, 1, 4, 2, 5):
        await store.put_metric(metric(f"m{n}", created_at=at(minutes=n)))
    first = await store.list_metrics(page=1, per_page=2)
    assert [m.code for m in first.items] == ["m1", "m2"]
    assert (first.total_count, first.total_pages, first.page, first.per_page) == (5, 3, 1, 2)
    last = await store.list_metrics(page=3, per_page=2)
    assert [m.code for m in last.items] == ["m5"]
    beyond = await store.list_metrics(page=9, per_page=2)
    assert beyond.items == ()
    assert beyond.total_count == 5


async def test_empty_listing_has_one_page(store: Store) -> None:
    page = await store.list_plans()
    assert (page.items, page.total_count, page.total_pages) == ((), 0, 1)


async def test_paging_rejects_page_zero(store: Store) -> None:
    with pytest.raises(ValueError, match="page"):
        await store.list_customers(page=0)


async def test_plan_round_trip_keeps_charges_filters_and_decimals(store: Store) -> None:
    p = plan()
    await store.put_plan(p)
    got = await store.get_plan(code="pro")
    assert got == p
    assert got.charges[0].filters[0].values == {"model": ("gpt-4o",), "type": ("input",)}
    assert got.charges[0].properties["package_size"] == 1000
    assert await store.get_plan(id=p.id) == p


async def test_plan_conflict_not_found_delete_and_listing(store: Store) -> None:
    await store.put_plan(plan("pro"))
    await store.put_plan(plan("team", created_at=at(seconds=1)))
    with pytest.raises(Conflict) as caught:
        await store.put_plan(plan("pro", id="other"))
    assert caught.value.issues == {"code": ["value_already_exist"]}
    page = await store.list_plans(per_page=1)
    assert ([p.code for p in page.items], page.total_pages) == (["pro"], 2)
    await store.delete_plan("plan-pro")
    with pytest.raises(NotFound) as missing:
        await store.get_plan(code="pro")
    assert missing.value.code == "plan_not_found"
    with pytest.raises(NotFound):
        await store.delete_plan("plan-pro")


async def test_customer_crud(store: Store) -> None:
    c = customer()
    await store.put_customer(c)
    assert await store.get_customer(external_id="cus_1") == c
    updated = msgspec.structs.replace(c, name="Grace")  # same id: a replace
    await store.put_customer(updated)
    assert await store.get_customer(external_id="cus_1") == updated
    assert (await store.list_customers()).total_count == 1
    with pytest.raises(Conflict) as caught:
        await store.put_customer(customer("cus_1", id="another"))
    assert caught.value.issues == {"external_id": ["value_already_exist"]}
    await store.delete_customer("cus_1")
    with pytest.raises(NotFound) as missing:
        await store.get_customer(external_id="cus_1")
    assert missing.value.code == "customer_not_found"
    with pytest.raises(NotFound):
        await store.delete_customer("cus_1")


async def test_subscription_newest_wins_and_filters(store: Store) -> None:
    old = subscription(id="s-old", status=SubscriptionStatus.TERMINATED, created_at=at(days=-1))
    new = subscription(id="s-new", created_at=at())
    other = subscription(
        "sub_2", external_customer_id="cus_2", plan_code="team", created_at=at(hours=1)
    )
    for s in (new, other, old):
        await store.put_subscription(s)
    assert await store.get_subscription(external_id="sub_1") == new
    with pytest.raises(NotFound) as missing:
        await store.get_subscription(external_id="nope")
    assert missing.value.code == "subscription_not_found"

    everything = await store.list_subscriptions()
    assert [s.id for s in everything.items] == ["s-old", "s-new", "s-sub_2"]
    by_customer = await store.list_subscriptions(external_customer_id="cus_1")
    assert [s.id for s in by_customer.items] == ["s-old", "s-new"]
    by_plan = await store.list_subscriptions(plan_code="team")
    assert [s.id for s in by_plan.items] == ["s-sub_2"]
    active = await store.list_subscriptions(statuses=["active"], per_page=1, page=2)
    assert ([s.id for s in active.items], active.total_count) == (["s-sub_2"], 2)
    none = await store.list_subscriptions(external_customer_id="cus_1", plan_code="team")
    assert none.total_count == 0


async def test_subscription_replace_by_id(store: Store) -> None:
    await store.put_subscription(subscription())
    terminated = subscription(status=SubscriptionStatus.TERMINATED)
    await store.put_subscription(terminated)
    assert await store.get_subscription(external_id="sub_1") == terminated
    assert (await store.list_subscriptions(statuses=["active"])).total_count == 0


async def test_api_keys(store: Store) -> None:
    first = api_key("key-1", created_at=at())
    second = api_key("key-2", created_at=at(minutes=1))
    await store.put_key(first)
    await store.put_key(second)
    assert await store.get_key(id="key-1") == first
    assert await store.get_key(key_hash="hash-key-2") == second
    assert await store.list_keys() == [second, first]  # newest first
    revoked = msgspec.structs.replace(first, revoked_at=at(hours=1))
    await store.put_key(revoked)
    assert not (await store.get_key(key_hash="hash-key-1")).active
    with pytest.raises(Conflict) as caught:
        await store.put_key(api_key("key-3", key_hash="hash-key-2"))
    assert caught.value.issues == {"key_hash": ["value_already_exist"]}
    with pytest.raises(NotFound) as missing:
        await store.get_key(key_hash="nope")
    assert missing.value.code == "api_key_not_found"


async def test_ping(store: Store) -> None:
    assert await store.ping()
