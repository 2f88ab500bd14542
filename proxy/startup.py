"""Start-up failures an operator can act on: one line each, never a traceback.

The app's lifespan raises :class:`StartupFailed` for them (a store that cannot be opened).
Litestar reports any lifespan failure to the server with the whole formatted traceback as
the ASGI ``lifespan.startup.failed`` message, which uvicorn logs as it is;
:func:`one_line_failures` replaces that message with the failure's own line. Other start-up
errors (bugs) keep their traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["StartupFailed", "one_line_failures"]

#: ASGI's ``send``, as far as lifespan messages need it.
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class StartupFailed(Exception):
    """The gateway cannot start for a reason its message states with what to do about it.

    The message is kept to one line: a driver's may span several (PostgreSQL's DETAIL and
    HINT), which are joined with ``; ``.
    """

    def __init__(self, message: str) -> None:
        parts = (part.strip() for part in message.splitlines())
        super().__init__("; ".join(part for part in parts if part))


def _startup_failure(exc: BaseException | None) -> StartupFailed | None:
    """The StartupFailed behind ``exc``, looking into exception groups (Litestar runs the
    lifespan inside a task group)."""
    if isinstance(exc, StartupFailed):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _startup_failure(inner)
            if found is not None:
                return found
    return None


def one_line_failures(send: Send) -> Send:
    """``send`` for the lifespan scope, with a StartupFailed reported as its one line.

    Litestar sends ``lifespan.startup.failed`` from inside the ``except`` block that caught
    the failure, so the exception is the one being handled when the message is sent.
    """

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message.get("type") == "lifespan.startup.failed":
            failure = _startup_failure(sys.exc_info()[1])
            if failure is not None:
                message = {**message, "message": f"tallygate: {failure}"}
        await send(message)

    return sending
