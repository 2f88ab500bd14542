"""A background job run some time after it is poked: one run for a burst of pokes.

The SQLite adapter's WAL checkpoints and rollup folds both follow writes this way: the hot
path only sets a flag, and the work runs once per interval for however many writes came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["Debounced"]


class Debounced:
    """Runs ``job`` in a task ``interval`` seconds after :meth:`poke`.

    Pokes during the wait (or during the run) make one more run later, never more than one.
    ``job`` returns whether it succeeded; a failed run is tried again after another interval.
    """

    def __init__(self, job: Callable[[], Awaitable[bool]], *, interval: float, name: str) -> None:
        self._job = job
        self._interval = interval
        self._name = name
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    def poke(self) -> None:
        """Ask for a run (cheap: called on the hot path)."""
        self._poked.set()

    async def stop(self) -> None:
        """End the task; a run in progress is cancelled (callers finish the work themselves)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._poked.wait()
            # Let the burst go on: what it writes is handled by this one run.
            await asyncio.sleep(self._interval)
            self._poked.clear()
            if not await self._job():
                self._poked.set()
