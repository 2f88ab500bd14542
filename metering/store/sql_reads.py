"""Event reads written once for both SQL adapters: the range bounds, listings and look-ups.

Aggregates stay in each adapter (``sqlite_query``, ``postgres_query``...): their statements
and how they fold rollup rows differ by dialect. These reads do not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from metering.errors import NotFound
from metering.models import Event
from metering.ports import AggregateQuery
from metering.store.codec import JsonCodec, event_from_row, to_micros
from metering.store.sql_dialect import SqlDialect

__all__ = ["MIN_TS", "EventReads", "bounds"]

C = TypeVar("C")

#: The lowest BIGINT: the start of an open range (both databases store ``ts`` as int64).
MIN_TS = -(2**63)

_EVENT_COLUMNS = (
    "id, transaction_id, external_subscription_id, code, ts, properties, created_us, "
    "precise_total_amount_cents"
)
_LIST = (
    f"SELECT {_EVENT_COLUMNS} FROM events "  # noqa: S608 - fixed text
    "WHERE external_subscription_id = ? AND code = ? AND ts BETWEEN ? AND ? "
    "ORDER BY ts, created_us, seq"
)
_GET = f"SELECT {_EVENT_COLUMNS} FROM events WHERE transaction_id = ?"  # noqa: S608


def bounds(query: AggregateQuery) -> tuple[int, int]:
    """The query's inclusive range in microseconds; an open start is :data:`MIN_TS`."""
    low = MIN_TS if query.from_ts is None else to_micros(query.from_ts)
    return low, to_micros(query.to_ts)


class EventReads(Generic[C]):
    """Event listings and look-ups over one adapter's dialect and codec."""

    def __init__(self, dialect: SqlDialect[C], codec: JsonCodec) -> None:
        self._dialect = dialect
        self._codec = codec
        self._list = dialect.sql(_LIST)
        self._get = dialect.sql(_GET + " ORDER BY seq LIMIT 1")
        self._get_in = dialect.sql(_GET + " AND external_subscription_id = ? ORDER BY seq LIMIT 1")

    async def list(
        self, conn: C, subscription: str, code: str, from_ts: datetime | None, to_ts: datetime
    ) -> list[Event]:
        """Events of one stream with ``from_ts <= timestamp <= to_ts``, in (timestamp,
        created_at) order."""
        low = MIN_TS if from_ts is None else to_micros(from_ts)
        rows = await self._dialect.fetch(
            conn, self._list, (subscription, code, low, to_micros(to_ts))
        )
        return [event_from_row(row, self._codec) for row in rows]

    async def get(self, conn: C, transaction_id: str, subscription: str | None) -> Event:
        """The event by transaction id (and subscription); the first stored one otherwise."""
        if subscription is None:
            rows = await self._dialect.fetch(conn, self._get, (transaction_id,))
        else:
            rows = await self._dialect.fetch(conn, self._get_in, (transaction_id, subscription))
        if not rows:
            raise NotFound("event")
        return event_from_row(rows[0], self._codec)
