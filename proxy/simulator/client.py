"""A small synchronous client of the `/_sim/` control API, for tests and benchmarks.

It speaks HTTP, so it works the same whether the simulator runs in a thread of this process or in
another process (`python -m proxy.simulator`).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

__all__ = ["SimulatorControl"]


class SimulatorControl:
    """Steer a running simulator: faults, stats and the request log."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        """`url` is the simulator's root (`http://127.0.0.1:9001`); a trailing `/v1` is dropped."""
        root = url.rstrip("/").removesuffix("/v1")
        # trust_env=False: a proxy configured in the environment must never see loopback traffic.
        self._http = httpx.Client(base_url=f"{root}/_sim", timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> SimulatorControl:
        """Use as a context manager that closes the client."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()

    def _call(self, method: str, path: str, body: dict[str, object] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def set_faults(self, *, times: int | None = None, **fields: object) -> dict[str, Any]:
        """Set server-wide faults (replacing earlier ones), for the next `times` requests if given.

        Example: `control.set_faults(status=429, retry_after=1, times=2)`.
        """
        body = dict(fields) if times is None else {**fields, "times": times}
        result: dict[str, Any] = self._call("POST", "/faults", body)
        return result

    def reset_faults(self) -> None:
        """Back to the simulator's default faults."""
        self._call("DELETE", "/faults")

    def faults(self) -> dict[str, Any]:
        """The current server-wide faults and the `times` left."""
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def stats(self) -> dict[str, Any]:
        """Requests per path and the usage totals reported on the wire."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset_stats(self) -> None:
        """Zero the counters."""
        self._call("DELETE", "/stats")

    def requests(self) -> list[dict[str, Any]]:
        """The last received API requests, oldest first."""
        result: list[dict[str, Any]] = self._call("GET", "/requests")
        return result

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        self._call("DELETE", "/requests")

    def reset(self) -> None:
        """Reset faults, counters and the request log at once."""
        self._call("POST", "/reset")
