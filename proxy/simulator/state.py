"""The mutable state of one simulator app: server-wide faults, counters and the request log.

One instance per app, touched only from the app's event loop, so it needs no locks; other threads
reach it through the `/_sim/*` control API.
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from typing import NamedTuple

from proxy.simulator.config import Faults, SimulatorConfig
from proxy.simulator.tokens import Usage

__all__ = ["LoggedRequest", "SimulatorState"]


class LoggedRequest(NamedTuple):
    """A received request, kept raw; rendered to JSON only when someone asks for the log."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    body_size: int

    def render(self) -> dict[str, object]:
        """The JSON form served by `GET /_sim/requests`."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            # Repeated headers are joined as HTTP allows, so nothing is silently dropped.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "headers": headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "body_size": self.body_size,
            "body_truncated": len(self.body) < self.body_size,
        }


class SimulatorState:
    """Server-wide faults, request counters, reported-usage totals and the request log."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Start with the config's default faults, zero counters and an empty log."""
        self.config = config
        self._faults = config.faults
        self._remaining: int | None = None
        self._numbers = itertools.count(1)
        self._paths: Counter[str] = Counter()
        self._usage: Counter[str] = Counter()
        self._log: deque[LoggedRequest] = deque(maxlen=config.request_log_size)

    def next_number(self) -> int:
        """A fresh number for ids (`chatcmpl-sim<n>`, `x-request-id`)."""
        return next(self._numbers)

    # Faults

    def set_faults(self, faults: Faults, times: int | None) -> None:
        """Apply `faults` to every following request, or to the next `times` requests only."""
        self._faults = faults
        self._remaining = times

    def reset_faults(self) -> None:
        """Back to the config's default faults."""
        self.set_faults(self.config.faults, None)

    def take_faults(self) -> Faults:
        """The server-wide faults for one incoming API request, counting down `times`."""
        faults = self._faults
        if self._remaining is not None:
            self._remaining -= 1
            if self._remaining <= 0:
                self.reset_faults()
        return faults

    def faults_view(self) -> dict[str, object]:
        """The current server-wide faults and how many requests they still apply to."""
        return {"faults": self._faults, "times": self._remaining}

    # Counters

    def count_request(self, path: str) -> None:
        """Count one API request (control requests are not counted)."""
        self._paths[path] += 1

    def record_usage(self, usage: Usage) -> None:
        """Add the usage of one response whose usage was written to the wire."""
        self._usage["responses"] += 1
        self._usage["prompt_tokens"] += usage.prompt
        self._usage["completion_tokens"] += usage.completion
        self._usage["total_tokens"] += usage.total
        self._usage["cached_tokens"] += usage.cached
        self._usage["reasoning_tokens"] += usage.reasoning

    def stats(self) -> dict[str, object]:
        """Requests per path and the sum of the usage reported on the wire."""
        usage_keys = (
            "responses",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cached_tokens",
            "reasoning_tokens",
        )
        return {
            "requests": dict(self._paths),
            "total_requests": self._paths.total(),
            "usage": {key: self._usage[key] for key in usage_keys},
        }

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._paths.clear()
        self._usage.clear()

    # Request log

    def log_request(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """Remember one request; only the first `request_log_body_limit` body bytes are kept."""
        kept = body[: self.config.request_log_body_limit]
        self._log.append(LoggedRequest(method, path, query, headers, kept, len(body)))

    def requests(self) -> list[dict[str, object]]:
        """The logged requests, oldest first."""
        return [entry.render() for entry in self._log]

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        self._log.clear()
