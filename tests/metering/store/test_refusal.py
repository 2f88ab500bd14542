"""A batch with a value the store cannot hold raises RecordRefused, the whole group rolls back,
and the store writes on: the writer relies on this to refuse that batch alone."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from metering.errors import RecordRefused
from metering.ports import AggregateQuery, EventBatch, Store
from tests.metering.store.builders import CODE, SUB, at, event, metric
from tests.metering.store.conftest import ADAPTERS

# Values each SQL adapter refuses, as real events carry them (no ingestion check in between).
_SURROGATE = {"transaction_id": "t-\ud800"}
_SURROGATE_PROPERTY = {"properties": {"model": "gpt-\udc00", "type": "input", "tokens": 1}}
_HUGE_INTEGER = {"properties": {"model": "gpt-4o", "type": "input", "tokens": 10**5000}}
_NUL = {"transaction_id": "t-\u0000"}
_NUL_SUBSCRIPTION = {"sub": "sub-\u0000"}
# (A number outside the numeric domain, such as 1e200000, is no longer one: it is stored and
# never summed into a rollup, see metering.values and test_odd_values.)

REFUSED: dict[str, dict[str, dict[str, Any]]] = {
    "sqlite": {"surrogate": _SURROGATE, "surrogate-property": _SURROGATE_PROPERTY},
    "postgres": {
        "surrogate": _SURROGATE,
        "nul": _NUL,
        "nul-subscription": _NUL_SUBSCRIPTION,
        "huge-integer": _HUGE_INTEGER,
    },
}
REFUSED["sqlite"]["huge-integer"] = _HUGE_INTEGER

CASES = [(adapter, name) for adapter, cases in REFUSED.items() for name in sorted(cases)]


def _poisoned(adapter: str, name: str) -> EventBatch:
    case = dict(REFUSED[adapter][name])
    transaction_id = case.pop("transaction_id", "t-bad")
    return EventBatch(events=(event(transaction_id, **case),))


@pytest.mark.parametrize(("adapter", "case"), CASES)
async def test_a_value_the_store_cannot_hold_is_refused_and_nothing_is_written(
    tmp_path: Path, adapter: str, case: str
) -> None:
    async with ADAPTERS[adapter](tmp_path) as store:
        await store.open()
        try:
            await store.put_metric(metric())  # rollups are written with the events
            good = EventBatch(events=(event("good", ts=at(seconds=1)),))
            with pytest.raises(RecordRefused):
                await store.write_batches([good, _poisoned(adapter, case)])
            assert await _tokens(store) == (0, Decimal(0))  # one transaction: none of it
            assert (await store.write_batches([good]))[0].inserted == 1
            assert await _tokens(store) == (1, Decimal(10))
        finally:
            await store.close()


async def _tokens(store: Store) -> tuple[int, Decimal]:
    """Events and summed tokens of the subscription (rollups and raw events alike)."""
    query = AggregateQuery(
        external_subscription_id=SUB, code=CODE, from_ts=None, to_ts=at(days=1), field_name="tokens"
    )
    groups = await store.aggregate(query)
    return sum(g.events for g in groups), sum((g.total for g in groups), Decimal(0))
