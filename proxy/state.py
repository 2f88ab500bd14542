"""The gateway's resources for one app instance, opened and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config import Settings
from metering.ports import Store
from metering.service import MeteringService
from metering.writer import EventWriter
from proxy.auth import KeyAuthenticator
from proxy.refusals import StreamOptionsRefusals
from proxy.tokens import TokenCounter
from proxy.upstream import UpstreamRouter
from proxy.upstream_client import UpstreamClient

__all__ = ["Clock", "Gateway", "system_clock"]

log = logging.getLogger("tallygate")

#: At shutdown, how long to wait for cancelled streams to reach their metering.
_STREAMS_DRAIN_SECONDS = 10.0

#: At shutdown, the time left between the writer giving up and the server cutting requests.
_ANSWER_SECONDS = 1.0

#: Where every "now" of the gateway comes from (tests pass a fixed clock).
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Gateway:
    """Everything a request handler needs; lives on ``app.state.gateway``."""

    settings: Settings
    store: Store
    writer: EventWriter
    service: MeteringService
    auth: KeyAuthenticator
    router: UpstreamRouter
    http: UpstreamClient
    tokens: TokenCounter
    clock: Clock
    #: Upstreams that refused the injected ``stream_options`` (proven by a retry), for a while.
    stream_options_refusals: StreamOptionsRefusals = field(default_factory=StreamOptionsRefusals)
    #: Serializes the admin API's read-decide-write sequences on customers and subscriptions.
    records_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Work that must finish even though its request was cancelled (awaited at shutdown).
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: Streams being relayed (each meters in its own ``finally``, also when cancelled).
    open_streams: int = 0
    streams_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def begin_shutdown(self) -> None:
        """The process is asked to exit: writes of usage are retried until just before the
        shutdown grace ends, no longer; what is unwritten then is given up and reported.

        ``tallygate serve`` calls this when the signal arrives, so the writer's grace and the
        in-flight requests' grace are the same one; the lifespan calls it again at shutdown
        (an earlier deadline stays). The writer gives up a moment before the server cuts the
        requests that still run, so those waiting on their usage can answer first.
        """
        grace = float(self.settings.server.shutdown_grace_seconds)
        self.writer.give_up_after(grace - min(_ANSWER_SECONDS, grace / 2))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to completion independently of the calling request's cancellation."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Usually metering that could not be written: say so loudly, it is money.
            log.error("background work failed", exc_info=task.exception())

    def stream_opened(self) -> None:
        """A relay started (shutdown waits for it to finish or be cancelled and meter)."""
        self.open_streams += 1
        self.streams_closed.clear()

    def stream_closed(self) -> None:
        """A relay ended; its metering is done or spawned."""
        self.open_streams -= 1
        if self.open_streams == 0:
            self.streams_closed.set()

    async def drain_background(self) -> None:
        """Wait for relays and spawned work (shutdown: before the writer stops).

        Streams cancelled by the server's shutdown reach their ``finally`` (and spawn their
        metering) a few loop turns later, or when their suspended generator is finalized.
        """
        if self.open_streams:
            try:
                async with asyncio.timeout(_STREAMS_DRAIN_SECONDS):
                    await self.streams_closed.wait()
            except TimeoutError:
                log.error("%d stream(s) did not end at shutdown; unmetered", self.open_streams)
        while self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
