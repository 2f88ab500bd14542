"""Upstreams that refused the ``stream_options`` the gateway injects, each for a while.

To meter streams exactly, the gateway adds ``stream_options.include_usage`` to streamed chat
and completions requests (reference/openai-usage.md section 2). An upstream that does not know
the parameter answers 400; the request is then sent again without it, and only when that retry
succeeds is the refusal remembered here: a 400 that merely mentions ``stream_options`` (an
upstream echoing a client's own bad value) proves nothing about the upstream. While remembered,
the upstream's streams go without the parameter and are metered by estimate. A refusal ends
when its time is up (``upstreams.<name>.stream_options_refusal_seconds``) or when an operator
clears it (``DELETE /admin/v1/upstreams/{name}/stream_options_refusal``); ``/readyz`` lists
the refusals in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

__all__ = ["StreamOptionsRefusals"]

log = logging.getLogger("tallygate.upstream")


class StreamOptionsRefusals:
    """Upstream name -> until when its refusal of the injected parameter stands."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}

    def refuses(self, upstream: str, clock: Callable[[], datetime]) -> bool:
        """Whether ``upstream``'s refusal is in force now (an expired one is dropped)."""
        until = self._until.get(upstream)
        if until is None:
            return False  # the hot path: no clock read while nothing is remembered
        if clock() < until:
            return True
        del self._until[upstream]
        log.info("upstream %r: injecting stream_options again (its refusal expired)", upstream)
        return False

    def remember(self, upstream: str, until: datetime) -> None:
        """Record a proven refusal, standing until ``until``."""
        self._until[upstream] = until

    def clear(self, upstream: str) -> datetime | None:
        """Forget ``upstream``'s refusal; returns until when it would have stood (or None)."""
        return self._until.pop(upstream, None)

    def in_force(self, clock: Callable[[], datetime]) -> dict[str, datetime]:
        """Every refusal that stands now, by upstream name."""
        if not self._until:
            return {}
        now = clock()
        return {name: until for name, until in sorted(self._until.items()) if now < until}
