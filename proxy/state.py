"""The gateway's resources for one app instance, opened and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from config import Settings
from metering.ports import Store
from metering.service import MeteringService
from metering.writer import EventWriter
from proxy.auth import KeyAuthenticator
from proxy.tokens import TokenCounter
from proxy.upstream import UpstreamRouter

__all__ = ["Clock", "Gateway", "system_clock"]

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
    http: httpx.AsyncClient
    tokens: TokenCounter
    clock: Clock
    #: Upstreams that refused an injected ``stream_options`` (fail open, asked once each).
    rejects_stream_options: set[str] = field(default_factory=set)
    #: Serializes the admin API's read-decide-write sequences on customers and subscriptions.
    records_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Work that must finish even though its request was cancelled (awaited at shutdown).
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to completion independently of the calling request's cancellation."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain_background(self) -> None:
        """Wait for every spawned piece of work (shutdown: before the writer stops)."""
        while self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
