"""The gateway's resources for one app instance, opened and closed by the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

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
