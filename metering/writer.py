"""Group commit: one task per process turns many callers' event batches into few transactions.

Callers ``await submit(batch)`` and get their :class:`~metering.ports.BatchResult` once the
batch is committed. The task takes everything queued when the previous commit finished (up to
``max_batch_events``) and writes it with one ``Store.write_batches`` call, so the number of
transactions follows the store's speed rather than the request rate, with no timer.

Load shedding happens at admission, before any usage exists: :meth:`EventWriter.admit` refuses
with :class:`~metering.errors.StoreUnavailable` (the gateway answers 503 + Retry-After) while
``max_pending`` events wait or while the store is failing. Usage that exists (a request that
was admitted and produced tokens) is never dropped: a write that fails with StoreUnavailable
(locked, full, I/O) is retried with backoff until the store recovers, and the callers wait.
Only at shutdown does the writer give up, after ``stop_retries`` more attempts. Any other
error fails that group's callers and the task carries on.
"""

from __future__ import annotations

import asyncio
import functools
import types
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any, NamedTuple, cast

from metering.errors import StoreBroken, StoreUnavailable
from metering.ports import BatchResult, EventBatch, Store

__all__ = ["EventWriter"]


class _Pending(NamedTuple):
    batch: EventBatch
    done: asyncio.Future[BatchResult]


class EventWriter:
    """Group-commit writer over a :class:`~metering.ports.Store` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch_events: int = 2000,
        max_pending: int = 10000,
        stop_retries: int = 10,
    ) -> None:
        if max_batch_events < 1 or max_pending < 1:
            raise ValueError("max_batch_events and max_pending must be >= 1")
        self._store = store
        self._max_batch_events = max_batch_events
        self._max_pending = max_pending
        self._stop_retries = stop_retries
        self._stalled = False  # the last write failed with StoreUnavailable and is being retried
        self._queue: deque[_Pending] = deque()
        self._pending_events = 0  # queued + being written: what memory holds, uncommitted
        # While the task waits for work: the future submit() resolves to wake it. A bare
        # future on the loop, not an asyncio.Event, whose every wait looks the loop up again.
        self._idle: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending_events(self) -> int:
        """Events submitted and not yet committed (or failed)."""
        return self._pending_events

    @property
    def stalled(self) -> bool:
        """Whether the store failed the last write (it is being retried)."""
        return self._stalled

    def admit(self) -> None:
        """Raise StoreUnavailable unless new work may start (running, store healthy, room);
        StoreBroken while the store reports itself :meth:`~metering.ports.Store.broken`."""
        if self._task is None or self._stopping:
            raise StoreUnavailable("event writer is not running")
        if (broken := self._store.broken()) is not None:
            raise StoreBroken(broken)
        if self._stalled:
            raise StoreUnavailable("the usage store is failing writes; they are being retried")
        if self._pending_events >= self._max_pending:
            raise StoreUnavailable(
                f"event queue full ({self._pending_events} events pending, max {self._max_pending})"
            )

    async def start(self) -> None:
        """Start the writer task (once)."""
        if self._task is not None:
            raise RuntimeError("EventWriter already started")
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="tallygate-event-writer")

    async def stop(self) -> None:
        """Refuse new batches, commit everything queued, then end the task."""
        if self._task is None:
            return
        self._stopping = True
        self._wake()
        await self._task

    async def submit(self, batch: EventBatch, *, admitted: bool = False) -> BatchResult:
        """Queue ``batch`` and return its result once it is committed.

        Without ``admitted``, the batch must fit: StoreUnavailable at once when the queue is
        full or the store is failing. ``admitted=True`` is for usage of work that already
        passed :meth:`admit` (tokens produced upstream): it is always queued while the writer
        runs, so admission, not submission, bounds the queue. Raises StoreUnavailable when the
        writer is not running or gave up at shutdown. Cancelling the caller does not withdraw
        the batch: usage already produced is still written.
        """
        if self._task is None or self._stopping:
            raise StoreUnavailable("event writer is not running")
        size = len(batch.events)
        if not admitted:
            self.admit()
            if self._pending_events + size > self._max_pending:
                raise StoreUnavailable(
                    f"event queue full ({self._pending_events} events pending, "
                    f"max {self._max_pending})"
                )
        assert self._loop is not None  # set with the task
        done: asyncio.Future[BatchResult] = self._loop.create_future()
        self._queue.append(_Pending(batch, done))
        self._pending_events += size
        self._wake()
        return await done

    def _wake(self) -> None:
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    def _take_group(self) -> list[_Pending]:
        """Everything queued, up to max_batch_events (but always at least one batch)."""
        group = [self._queue.popleft()]
        events = len(group[0].batch.events)
        while self._queue:
            size = len(self._queue[0].batch.events)
            if events + size > self._max_batch_events:
                break
            group.append(self._queue.popleft())
            events += size
        return group

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        return
                    assert self._loop is not None
                    self._idle = self._loop.create_future()
                    await self._idle
                    continue
                await self._commit(self._take_group())
        finally:
            # Only reached early if the task is cancelled: nobody is left to write the queue.
            self._stopping = True
            while self._queue:
                pending = self._queue.popleft()
                self._pending_events -= len(pending.batch.events)
                if not pending.done.done():
                    pending.done.set_exception(StoreUnavailable("event writer stopped"))

    async def _commit(self, group: list[_Pending]) -> None:
        batches = [p.batch for p in group]
        failures = 0
        while True:
            # The write's first step runs here, in this task: a store that commits without
            # suspending (SQLite's small writes on the loop's thread, the memory store) then
            # costs no task and no loop turns. A write that suspends goes on in a task.
            write = self._store.write_batches(batches)
            try:
                suspended_on = write.send(None)
            except StopIteration as done:
                self._stalled = False
                self._settle(group, done.value, None)
                return
            except StoreUnavailable as exc:
                error: BaseException = exc
            except Exception as exc:  # noqa: BLE001 - any other failure is the group's callers'
                self._settle(group, None, exc)
                return
            else:
                error_or_none = await self._finish_in_task(group, _resume(write, suspended_on))
                if error_or_none is None:
                    return
                error = error_or_none
            # The transaction rolled back: nothing of the group is written, so a retry is safe
            # (and the events' transaction ids make it idempotent anyway).
            failures += 1
            if self._stopping and failures > self._stop_retries:
                self._settle(group, None, error)
                return
            self._stalled = True
            try:
                await asyncio.sleep(min(1.0, 0.05 * 2 ** min(failures, 5)))
            except asyncio.CancelledError:
                self._settle(group, None, error)
                raise

    async def _finish_in_task(
        self, group: list[_Pending], write: Coroutine[Any, Any, list[BatchResult]]
    ) -> StoreUnavailable | None:
        """Let a suspended write finish in its own task; its StoreUnavailable (to retry) or
        None once the group is settled."""
        task = asyncio.ensure_future(write)
        try:
            # wait() never raises the write's own error: it is inspected below.
            await asyncio.wait([task])
        except asyncio.CancelledError:
            # The write goes on: its outcome still settles the group.
            task.add_done_callback(functools.partial(self._settle_from, group))
            raise
        error = None if task.cancelled() else task.exception()
        if isinstance(error, StoreUnavailable):
            return error
        self._stalled = False
        self._settle_from(group, task)
        return None

    def _settle_from(self, group: list[_Pending], task: asyncio.Future[list[BatchResult]]) -> None:
        if task.cancelled():
            self._settle(group, None, StoreUnavailable("event write cancelled"))
        elif (error := task.exception()) is not None:
            self._settle(group, None, error)
        else:
            self._settle(group, task.result(), None)

    def _settle(
        self,
        group: list[_Pending],
        results: list[BatchResult] | None,
        error: BaseException | None,
    ) -> None:
        """Hand each caller its batch's result, or the error of the group's write."""
        self._pending_events -= sum(len(p.batch.events) for p in group)
        if results is None:
            for pending in group:
                if not pending.done.done():
                    pending.done.set_exception(error or StoreUnavailable("event write failed"))
            return
        for pending, result in zip(group, results, strict=True):
            if not pending.done.done():
                pending.done.set_result(result)


@types.coroutine
def _resume(
    coro: Coroutine[Any, Any, list[BatchResult]], suspended_on: Any
) -> Generator[Any, Any, list[BatchResult]]:
    """Drive a coroutine whose first step already ran from where it suspended (what a task
    does, minus that first step; Python 3.12's eager tasks do the same)."""
    while True:
        try:
            sent = yield suspended_on
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - cancellation and all: the coroutine's
            try:
                suspended_on = coro.throw(exc)
            except StopIteration as done:
                return cast("list[BatchResult]", done.value)
        else:
            try:
                suspended_on = coro.send(sent)
            except StopIteration as done:
                return cast("list[BatchResult]", done.value)
