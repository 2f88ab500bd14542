"""PostgreSQL :class:`~metering.ports.Store` (asyncpg): the store several replicas share.

A connection pool; every write is one transaction at PostgreSQL's default isolation (read
committed) and durability (``synchronous_commit=on``: committed means on disk). Correctness
between replicas rests on the database, never on this process's memory:

- idempotency: the ``events_identity`` unique constraint decides (``postgres_events``);
- rollups: written in the event transaction; the specs they follow are read in that
  transaction under a shared advisory lock that rebuilds take exclusively, so a metric changed
  through one replica is followed by every other one from its next write on;
- deadlocks: every transaction takes its locks in one global order (``postgres_events``);
- migrations: under a session advisory lock at open (``postgres_schema``).

Connection failures, deadlocks, serialization failures, lack of resources and operator
intervention surface as :class:`~metering.errors.StoreUnavailable`, and so does a server that
does not answer (a hung server, a dead network path): every statement is bounded by
``statement_timeout`` (asyncpg's client-side ``command_timeout``; the cut transaction's
connection is discarded, so the server rolls it back; a COMMIT cut may have committed, and the
events' transaction ids make the writer's retry a no-op then), every connection attempt by
``connect_timeout``, and :meth:`PostgresStore.ping` by ``ping_timeout``; a refused login (password,
role, database) as :class:`~metering.errors.StoreBroken`, as does, at open, any other refusal
of the server's (no schema and no right to create it...); an event batch with a value
PostgreSQL cannot hold, as :class:`~metering.errors.RecordRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import asyncpg

from metering.errors import StoreBroken, StoreUnavailable
from metering.models import BillableMetric
from metering.ports import (
    AggregateQuery,
    BatchResult,
    EventBatch,
    GroupAggregate,
    Window,
    WindowAggregate,
)
from metering.store import postgres_query, postgres_series
from metering.store.postgres_dialect import PostgresDialect
from metering.store.postgres_events import load_specs, rebuild_rollups, write_group
from metering.store.postgres_schema import SPEC_LOCK, Conn, lock_sql, migrate
from metering.store.refusal import VALUE_ERRORS, refused_on
from metering.store.rollups import RollupSpec, changed_specs, spec_for
from metering.store.sql_facade import SqlFacade

__all__ = ["PostgresStore"]

T = TypeVar("T")

_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TransactionRollbackError,  # deadlock_detected, serialization_failure
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.OperatorInterventionError,  # admin shutdown, query canceled
    asyncpg.CannotConnectNowError,
    asyncpg.LockNotAvailableError,
)

#: The server refuses the login: a password changed, or the role or database dropped. New
#: connections fail until an operator puts it right.
_REFUSED = (
    asyncpg.InvalidAuthorizationSpecificationError,  # includes invalid_password
    asyncpg.InvalidCatalogNameError,
)

#: A batch PostgreSQL cannot hold (class 22 data exceptions: NUL in text, numeric overflow;
#: class 23: a constraint) or that cannot be encoded for it: that batch's fault.
_NOT_STORABLE: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    *VALUE_ERRORS,
)


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """Turn PostgreSQL's operational failures into StoreUnavailable (StoreBroken when the
    server refuses the login)."""
    try:
        yield
    except _REFUSED as exc:
        raise StoreBroken(f"postgresql refused: {exc}") from exc
    except TimeoutError as exc:  # an OSError too, but its message is empty
        raise StoreUnavailable("postgresql did not answer in time") from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"postgresql: {exc}") from exc


@contextlib.contextmanager
def _refused_at_open() -> Iterator[None]:
    """At open, whatever else the server refuses (no schema, no rights) is StoreBroken too:
    the gateway cannot start on it, and the message says what the server said."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise StoreBroken(f"postgresql refused: {exc}") from exc


async def _select_one(pool: asyncpg.Pool) -> bool:
    """Whether ``pool``'s server answers ``SELECT 1`` (False on any operational failure)."""
    try:
        return bool(await pool.fetchval("SELECT 1") == 1)
    except _UNAVAILABLE:
        return False


class PostgresStore(SqlFacade[Conn]):
    """The PostgreSQL adapter; see the module docstring.

    ``dsn`` is a ``postgresql://`` URL (asyncpg passes unknown query parameters, such as
    ``search_path``, on as server settings). ``rollup_extra_keys`` as for the SQLite store.
    ``max_connections`` bounds the pool; ``statement_timeout`` (seconds) how long one
    statement may go unanswered, ``connect_timeout`` one connection attempt, ``ping_timeout``
    :meth:`ping`; ``close_timeout`` how long :meth:`close` waits for busy connections.
    """

    def __init__(
        self,
        dsn: str,
        *,
        rollup_extra_keys: Sequence[str] = (),
        max_connections: int = 10,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        ping_timeout: float = 5.0,
        close_timeout: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self._extra_keys = tuple(rollup_extra_keys)
        self._max_connections = max_connections
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        super().__init__(PostgresDialect())
        self._pool: asyncpg.Pool | None = None
        # code -> spec of its rollups as last seen; a hint for reads, checked by each read.
        self._specs: dict[str, RollupSpec] = {}
        # The SELECT 1 under way: readiness probes share it rather than pile up connections.
        self._probe: asyncio.Task[bool] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, migrate the schema and bring rollups in line with the stored metrics."""
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        with _refused_at_open(), _unavailable():
            pool = await asyncpg.create_pool(
                self._dsn,
                # No floor of idle connections: asyncpg (0.32) would restore it in the
                # background while the server is unreachable, logging a traceback each time.
                # Connections are made on demand, each bounded by connect_timeout.
                min_size=0,
                max_size=self._max_connections,
                timeout=self._connect_timeout,
                # Per statement, client-side: a server that never answers (packets dropped,
                # the connection still open) fails the statement with TimeoutError instead of
                # hanging; asyncpg then cancels it and, that failing too, drops the connection.
                command_timeout=self._statement_timeout,
                # asyncpg prepares every statement; after five runs PostgreSQL may switch to a
                # generic plan, which for the range joins of aggregate() ignores the bounds
                # (580 ms instead of 40 ms at 100k events). Planning each time costs ~1 ms.
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        opened = False
        try:
            with _refused_at_open():
                with _unavailable():
                    async with pool.acquire() as conn:
                        await migrate(conn)
                self._pool = pool
                await self._write(self._reconcile)
            opened = True
        finally:
            if not opened:
                self._pool = None
                await pool.close()

    async def _reconcile(self, conn: Conn) -> None:
        # Metrics or rollup_extra_keys may differ from what the rollups were built with.
        await conn.execute(lock_sql(SPEC_LOCK, shared=False))
        current = await load_specs(conn)
        metrics = await self._tables.metrics.all(conn)
        wanted = {m.code: spec_for(m, self._extra_keys) for m in metrics}
        for code, spec in changed_specs(current, wanted).items():
            await rebuild_rollups(conn, code, spec, self._codec)
        self._specs = wanted

    async def close(self) -> None:
        """Close the pool (idempotent); connections still busy after ``close_timeout`` seconds
        are cut (a query on a dead network path never returns: shutdown must not wait)."""
        pool, self._pool = self._pool, None
        probe, self._probe = self._probe, None
        if probe is not None:
            # Its connection's release may wait on the dead path: the pool's close cuts it.
            probe.cancel()
            await asyncio.wait([probe], timeout=self._close_timeout)
        if pool is not None:
            # asyncpg's advice: a timeout around close(), which terminates the pool when cut.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.close(), self._close_timeout)

    def broken(self) -> str | None:
        """Never known ahead of a call: the server's failures are each call's
        StoreUnavailable, and pass when the server (or its operator) recovers."""
        return None

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` within ``ping_timeout`` seconds.

        A probe that takes longer goes on (bounded by the statement and connect timeouts)
        and later calls wait for it instead of starting another.
        """
        if self._pool is None:
            return False
        probe = self._probe
        if probe is None or probe.done():
            probe = self._probe = asyncio.create_task(_select_one(self._pool))
        done, _ = await asyncio.wait([probe], timeout=self._ping_timeout)
        return bool(done) and probe.result()

    # -- plumbing ----------------------------------------------------------------------------
    async def _read(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreUnavailable("postgresql store is not open")
        with _unavailable():
            async with self._pool.acquire() as conn:
                return await op(conn)

    async def _write(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``op`` in one transaction on a pooled connection."""
        if self._pool is None:
            raise StoreUnavailable("postgresql store is not open")
        with _unavailable():
            async with self._pool.acquire() as conn, conn.transaction():
                return await op(conn)

    async def _respec(self, conn: Conn, metric_codes: Sequence[str]) -> None:
        """Rebuild the rollups of ``metric_codes`` whose stored spec is not the metric's."""
        await conn.execute(lock_sql(SPEC_LOCK, shared=False))
        current = await load_specs(conn)
        metrics = {m.code: m for m in await self._tables.metrics.all(conn)}
        wanted = {
            code: spec_for(metrics[code], self._extra_keys)
            for code in metric_codes
            if code in metrics
        }
        relevant = {code: current[code] for code in metric_codes if code in current}
        for code, spec in changed_specs(relevant, wanted).items():
            await rebuild_rollups(conn, code, spec, self._codec)
        for code in metric_codes:
            if code in wanted:
                self._specs[code] = wanted[code]
            else:
                self._specs.pop(code, None)

    # -- billable metrics --------------------------------------------------------------------
    async def put_metric(self, metric: BillableMetric) -> None:
        """Insert or replace a metric; rebuilds rollups of codes whose spec changes."""

        async def put(conn: Conn) -> None:
            # The exclusive spec lock first: every lock of this transaction comes after it.
            await conn.execute(lock_sql(SPEC_LOCK, shared=False))
            old = await conn.fetchval("SELECT code FROM metrics WHERE id = $1", metric.id)
            await self._tables.metrics.put(conn, metric)
            await self._respec(
                conn, [metric.code] if old in (None, metric.code) else [metric.code, old]
            )

        await self._write(put)

    async def delete_metric(self, id: str) -> None:
        """Remove a metric and its code's rollups (its events stay)."""

        async def delete(conn: Conn) -> None:
            await conn.execute(lock_sql(SPEC_LOCK, shared=False))
            code = await conn.fetchval("SELECT code FROM metrics WHERE id = $1", id)
            await self._tables.metrics.delete(conn, "id", id)
            await self._respec(conn, [code])

        await self._write(delete)

    # -- events ------------------------------------------------------------------------------
    async def write_batches(self, batches: Sequence[EventBatch]) -> list[BatchResult]:
        """Store the batches in one transaction, each atomically, with their rollups."""
        # Suspend before asyncpg is touched: the EventWriter runs a write's first step in its
        # own task, and a connection made in that step would tie asyncpg's connect timeout
        # (asyncio.timeout: it cancels the task it was entered in) to the writer's task,
        # so a connect timing out would cancel the writer instead of failing this write.
        await asyncio.sleep(0)

        async def write(conn: Conn) -> tuple[list[BatchResult], dict[str, RollupSpec]]:
            with refused_on(_NOT_STORABLE):  # inside the transaction: it rolls back
                return await write_group(conn, batches, self._codec)

        results, specs = await self._write(write)
        self._specs = specs
        return results

    async def aggregate(self, query: AggregateQuery) -> list[GroupAggregate]:
        """Count, sum and max per group: whole days and hours from rollups, edges from events."""
        spec = self._specs.get(query.code)
        result = await self._read(
            lambda conn: postgres_query.aggregate(conn, query, spec, self._codec)
        )
        self._follow(query.code, result.stale, result.recorded)
        return result.groups

    async def aggregate_series(
        self, query: AggregateQuery, window: Window
    ) -> list[WindowAggregate]:
        """Count, sum and max per UTC window and group: whole windows from rollups."""
        spec = self._specs.get(query.code)
        result = await self._read(
            lambda conn: postgres_series.aggregate_series(conn, query, window, spec, self._codec)
        )
        self._follow(query.code, result.stale, result.recorded)
        return result.windows

    def _follow(self, code: str, stale: bool, recorded: RollupSpec | None) -> None:
        """After a read found the rollups rebuilt by another replica: use their spec next."""
        if not stale:
            return
        if recorded is None:
            self._specs.pop(code, None)
        else:
            self._specs[code] = recorded
