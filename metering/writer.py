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

One bad batch fails alone: a group whose write fails with any other error (the store refused a
value, :class:`~metering.errors.RecordRefused`) is split in halves, each written on its own,
down to the batch that fails by itself; only its caller gets the error. Bisection rather than
batch by batch: one bad batch among ``n`` costs about ``2 log2 n`` extra transactions instead
of ``n``, and bad batches are rare (ingestion refuses the values it knows a store cannot hold).

A store that reports itself broken (:meth:`~metering.ports.Store.broken`: its file damaged,
deleted or replaced) is not retried: no retry can succeed until an operator acts, so the group
is given up at once, like at the shutdown deadline below.

At shutdown, :meth:`EventWriter.give_up_after` sets a deadline: retries stop there, a write
still running then is abandoned, and past it a batch gets one short attempt (none while the
store is known to be failing). Every batch the writer could not write (refused, or given up
at shutdown) is handed to ``on_unwritten`` once, so that it is reported, never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any, cast

from metering.errors import StoreBroken, StoreUnavailable
from metering.ports import BatchResult, EventBatch, Store

__all__ = ["EventWriter", "UnwrittenHook"]

#: Told of each batch the writer could not write, with the error its caller got.
UnwrittenHook = Callable[[EventBatch, BaseException], None]


class _Pending:
    """One submitted batch, its caller's future, and where the writer is with it."""

    __slots__ = ("batch", "detached", "done", "settled")

    def __init__(self, batch: EventBatch, done: asyncio.Future[BatchResult]) -> None:
        self.batch = batch
        self.done = done
        self.settled = False  # result or error handed over (and counted out of pending)
        self.detached = False  # its write goes on in a task the writer no longer awaits


def _ignore(batch: EventBatch, error: BaseException) -> None:
    """The default ``on_unwritten``: the callers' errors are the only report."""


class EventWriter:
    """Group-commit writer over a :class:`~metering.ports.Store` (see the module docstring).

    ``last_attempt_seconds`` bounds a write attempted at or past the shutdown deadline.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_batch_events: int = 2000,
        max_pending: int = 10000,
        on_unwritten: UnwrittenHook = _ignore,
        last_attempt_seconds: float = 1.0,
    ) -> None:
        if max_batch_events < 1 or max_pending < 1:
            raise ValueError("max_batch_events and max_pending must be >= 1")
        self._store = store
        self._max_batch_events = max_batch_events
        self._max_pending = max_pending
        self._on_unwritten = on_unwritten
        self._last_attempt = last_attempt_seconds
        self._stalled = False  # the last write failed with StoreUnavailable and is being retried
        self._last_failure: StoreUnavailable | None = None  # the store's latest complaint
        self._queue: deque[_Pending] = deque()
        self._pending_events = 0  # queued + being written: what memory holds, uncommitted
        # While the task waits for work: the future submit() resolves to wake it. A bare
        # future on the loop, not an asyncio.Event, whose every wait looks the loop up again.
        self._idle: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._deadline: float | None = None  # the loop's time at which retries end
        self._known: asyncio.Future[None] | None = None  # resolved once a deadline is set

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

    def give_up_after(self, seconds: float) -> None:
        """Stop retrying ``seconds`` from now (an earlier deadline already set stays).

        From then on a failing or still running write is given up: its callers get
        StoreUnavailable and ``on_unwritten`` hears of each batch. Later batches get one
        attempt of at most ``last_attempt_seconds``, none while the store is failing.
        """
        deadline = asyncio.get_running_loop().time() + max(0.0, seconds)
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
        known, self._known = self._known, None
        if known is not None and not known.done():
            known.set_result(None)

    async def stop(self, *, give_up_after: float | None = None) -> None:
        """Refuse new batches, commit everything queued, then end the task.

        With ``give_up_after`` (seconds), what is still unwritten then is given up (see
        :meth:`give_up_after`); without, a failing store is waited for as while running.
        """
        if self._task is None:
            return
        if give_up_after is not None:
            self.give_up_after(give_up_after)
        self._stopping = True
        self._wake()
        await self._task

    async def submit(self, batch: EventBatch, *, admitted: bool = False) -> BatchResult:
        """Queue ``batch`` and return its result once it is committed.

        Without ``admitted``, the batch must fit: StoreUnavailable at once when the queue is
        full or the store is failing. ``admitted=True`` is for usage of work that already
        passed :meth:`admit` (tokens produced upstream): it is always queued while the writer
        runs, so admission, not submission, bounds the queue. Raises StoreUnavailable when the
        writer is not running or gave up at shutdown (an admitted batch is then reported),
        and whatever the store raised for this batch alone (RecordRefused: a value it cannot
        hold). Cancelling the caller does not withdraw the batch: usage already produced is
        still written.
        """
        if self._task is None or self._stopping:
            refused = StoreUnavailable("event writer is not running")
            if admitted:
                self._report(batch, refused)
            raise refused
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
                group = self._take_group()
                try:
                    await self._commit(group)
                except asyncio.CancelledError:
                    # Halves of a split not written yet; a detached write settles its own.
                    stopped = StoreUnavailable("event writer stopped")
                    for pending in group:
                        if not pending.detached:
                            self._fail(pending, stopped)
                    raise
        finally:
            # Only reached early if the task is cancelled: nobody is left to write the queue.
            self._stopping = True
            while self._queue:
                self._fail(self._queue.popleft(), StoreUnavailable("event writer stopped"))

    def _deadline_known(self) -> asyncio.Future[None]:
        """A future that :meth:`give_up_after` resolves (a write waits on it, unbounded until
        then: a store that hangs rather than fails is cut once shutdown sets a deadline)."""
        if self._known is None:
            assert self._loop is not None
            self._known = self._loop.create_future()
        return self._known

    def _remaining(self) -> float | None:
        """Seconds until the shutdown deadline (negative past it); None without one."""
        if self._deadline is None:
            return None
        assert self._loop is not None
        return self._deadline - self._loop.time()

    async def _commit(self, group: Sequence[_Pending]) -> None:
        """Write ``group``: retry while the store is unavailable, split on any other error."""
        failures = 0
        last: Exception | None = None
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0 and self._stalled:
                self._give_up(group, _past_deadline(last or self._last_failure or "it failed"))
                return
            outcome = await self._attempt(group)
            if isinstance(outcome, list):
                self._stalled = False
                for pending, result in zip(group, outcome, strict=True):
                    self._settle(pending, result)
                return
            if not isinstance(outcome, StoreUnavailable):
                if len(group) == 1:
                    self._stalled = False  # it answered, if only to refuse this batch
                    self._fail(group[0], outcome)
                    return
                # Nothing of the group was written (one transaction): each half on its own, in
                # order, so a batch still sees the ones before it as stored (duplicates).
                half = len(group) // 2
                await self._commit(group[:half])
                await self._commit(group[half:])
                return
            if self._store.broken() is not None:
                # Damaged, deleted or replaced under us: no retry can succeed until an operator
                # repairs it, so the callers are answered now and the batches reported (with
                # their events, for a replay) instead of held until shutdown.
                self._stalled = True
                self._give_up(group, outcome)
                return
            # The transaction rolled back: nothing of the group is written, so a retry is safe
            # (and the events' transaction ids make it idempotent anyway).
            failures += 1
            last = self._last_failure = outcome
            self._stalled = True
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._give_up(group, _past_deadline(outcome))
                return
            pause = min(1.0, 0.05 * 2 ** min(failures, 5))
            await asyncio.sleep(pause if remaining is None else min(pause, remaining))

    async def _attempt(self, group: Sequence[_Pending]) -> list[BatchResult] | Exception:
        """One write of the group: its results, or the error it failed with (not raised)."""
        # The write's first step runs here, in this task: a store that commits without
        # suspending (SQLite's small writes on the loop's thread, the memory store) then
        # costs no task and no loop turns. A write that suspends goes on in a task.
        write = self._store.write_batches([pending.batch for pending in group])
        try:
            suspended_on = write.send(None)
        except StopIteration as done:
            return cast("list[BatchResult]", done.value)
        except Exception as exc:  # noqa: BLE001 - _commit sorts it: retry, split or refuse
            return exc
        task = asyncio.ensure_future(_resume(write, suspended_on))
        try:
            while not task.done():
                remaining = self._remaining()
                if remaining is not None:
                    # wait() never raises the write's own error: it is inspected below.
                    await asyncio.wait([task], timeout=max(remaining, self._last_attempt))
                    break
                # No deadline yet: wait for the write, or for a deadline to bound it by.
                known: asyncio.Future[Any] = self._deadline_known()
                await asyncio.wait([task, known], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The write goes on: its outcome still settles the group.
            for pending in group:
                pending.detached = True
            task.add_done_callback(functools.partial(self._settle_from, group))
            raise
        if not task.done():
            task.cancel()  # its end is of no interest now: whatever it raises is dropped
            task.add_done_callback(_drop_outcome)
            return StoreUnavailable("the write was still running (it may have committed)")
        if task.cancelled():
            return StoreUnavailable("event write cancelled")
        error = task.exception()
        if error is not None:
            return error if isinstance(error, Exception) else StoreUnavailable(repr(error))
        return task.result()

    def _settle_from(
        self, group: Sequence[_Pending], task: asyncio.Future[list[BatchResult]]
    ) -> None:
        """Settle a detached write's group from its task (no retry, no split: the writer is
        gone)."""
        if task.cancelled():
            self._give_up(group, StoreUnavailable("event write cancelled"))
        elif (error := task.exception()) is not None:
            self._give_up(group, error)
        else:
            for pending, result in zip(group, task.result(), strict=True):
                self._settle(pending, result)

    def _settle(self, pending: _Pending, result: BatchResult) -> None:
        if self._count_out(pending) and not pending.done.done():
            pending.done.set_result(result)

    def _give_up(self, group: Sequence[_Pending], error: BaseException) -> None:
        for pending in group:
            self._fail(pending, error)

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        """Hand the caller ``error`` and report the batch (once)."""
        if not self._count_out(pending):
            return
        self._report(pending.batch, error)
        if not pending.done.done():
            pending.done.set_exception(error)

    def _count_out(self, pending: _Pending) -> bool:
        """Mark ``pending`` settled and no longer pending; False if it already was."""
        if pending.settled:
            return False
        pending.settled = True
        self._pending_events -= len(pending.batch.events)
        return True

    def _report(self, batch: EventBatch, error: BaseException) -> None:
        # Whatever the hook does wrong must not end the task that every caller waits on.
        with contextlib.suppress(Exception):
            self._on_unwritten(batch, error)


def _drop_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: asyncio does not log it as never retrieved


def _past_deadline(cause: Exception | str) -> StoreUnavailable:
    """The error of a batch given up at the shutdown deadline, with the store's last word."""
    return StoreUnavailable(f"given up at the shutdown deadline: {cause}")


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
