"""Group commit: one task per process turns many callers' event batches into few transactions.

Callers ``await submit(batch)`` and get their :class:`~metering.ports.BatchResult` once the
batch is committed. The task takes everything queued when the previous commit finished (up to
``max_batch_events``) and writes it with one ``Store.write_batches`` call, so the number of
transactions follows the store's speed rather than the request rate, with no timer.

The queue is bounded by events: past ``max_pending`` a submit fails at once with
:class:`~metering.errors.StoreUnavailable` (the gateway answers 503 + Retry-After) instead of
buffering without limit. A failed write fails that group's callers and the task carries on.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from typing import NamedTuple

from metering.errors import StoreUnavailable
from metering.ports import BatchResult, EventBatch, Store

__all__ = ["EventWriter"]


class _Pending(NamedTuple):
    batch: EventBatch
    done: asyncio.Future[BatchResult]


class EventWriter:
    """Group-commit writer over a :class:`~metering.ports.Store` (see the module docstring)."""

    def __init__(
        self, store: Store, *, max_batch_events: int = 2000, max_pending: int = 10000
    ) -> None:
        if max_batch_events < 1 or max_pending < 1:
            raise ValueError("max_batch_events and max_pending must be >= 1")
        self._store = store
        self._max_batch_events = max_batch_events
        self._max_pending = max_pending
        self._queue: deque[_Pending] = deque()
        self._pending_events = 0  # queued + being written: what memory holds, uncommitted
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending_events(self) -> int:
        """Events submitted and not yet committed (or failed)."""
        return self._pending_events

    async def start(self) -> None:
        """Start the writer task (once)."""
        if self._task is not None:
            raise RuntimeError("EventWriter already started")
        self._task = asyncio.create_task(self._run(), name="tallygate-event-writer")

    async def stop(self) -> None:
        """Refuse new batches, commit everything queued, then end the task."""
        if self._task is None:
            return
        self._stopping = True
        self._wakeup.set()
        await self._task

    async def submit(self, batch: EventBatch) -> BatchResult:
        """Queue ``batch`` and return its result once it is committed.

        Raises StoreUnavailable when the queue is full, when the writer is not running, or
        when the store failed the transaction that carried this batch. Cancelling the caller
        does not withdraw the batch: usage already produced is still written.
        """
        if self._task is None or self._stopping:
            raise StoreUnavailable("event writer is not running")
        size = len(batch.events)
        if self._pending_events + size > self._max_pending:
            raise StoreUnavailable(
                f"event queue full ({self._pending_events} events pending, max {self._max_pending})"
            )
        done: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(batch, done))
        self._pending_events += size
        self._wakeup.set()
        return await done

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
                    self._wakeup.clear()
                    await self._wakeup.wait()
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
        write = asyncio.ensure_future(self._store.write_batches([p.batch for p in group]))
        # The callback settles the group even if this task is cancelled while it waits.
        write.add_done_callback(functools.partial(self._settle, group))
        # wait() never raises the write's own error: _settle hands it to the group's callers,
        # so any failure reaches them and this task keeps serving later submissions.
        await asyncio.wait([write])

    def _settle(self, group: list[_Pending], write: asyncio.Future[list[BatchResult]]) -> None:
        self._pending_events -= sum(len(p.batch.events) for p in group)
        if write.cancelled():
            error: BaseException | None = StoreUnavailable("event write cancelled")
        else:
            error = write.exception()
        if error is not None:
            for pending in group:
                if not pending.done.done():
                    pending.done.set_exception(error)
            return
        for pending, result in zip(group, write.result(), strict=True):
            if not pending.done.done():
                pending.done.set_result(result)
