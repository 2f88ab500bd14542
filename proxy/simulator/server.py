"""Run the simulator with uvicorn in a background thread with its own event loop.

The listening socket is bound before the thread starts (see :mod:`proxy.background`), so port 0
yields a known ephemeral port and there is no window in which a client could be refused.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from proxy.background import BackgroundServer
from proxy.simulator.app import SimulatorApp, create_app
from proxy.simulator.client import SimulatorControl
from proxy.simulator.config import SimulatorConfig

__all__ = ["SimulatorServer", "uvicorn_config"]


def uvicorn_config(
    app: SimulatorApp,
    *,
    log_level: str = "warning",
    quiet: bool = True,
    loop: Literal["asyncio", "uvloop", "auto"] = "asyncio",
) -> uvicorn.Config:
    """The uvicorn settings that keep the simulator cheap (for ``python -m proxy.simulator``).

    No access log, no proxy-header middleware, no lifespan; `http="auto"` picks httptools when it
    is installed, else h11. `quiet=True` leaves the process's logging handlers alone.
    """
    return uvicorn.Config(
        app,
        loop=loop,
        http="auto",
        lifespan="off",
        access_log=False,
        log_level=log_level,
        log_config=None if quiet else LOGGING_CONFIG,
        proxy_headers=False,
        server_header=False,
        # Never-ending or delayed streams must not hold up a shutdown for long.
        timeout_graceful_shutdown=2,
    )


class SimulatorServer:
    """The simulator served on loopback from a background thread.

    Usage: `with SimulatorServer() as sim: OpenAI(base_url=sim.base_url, api_key="x")`.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Prepare a server; nothing is bound or started until `start()`."""
        self.config = config if config is not None else SimulatorConfig()
        self.host = host
        self.app = create_app(self.config)
        self._server = BackgroundServer(self.app, host=host, port=port, name="simulator")
        self._control: SimulatorControl | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known once started)."""
        return self._server.port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. `http://127.0.0.1:40123`."""
        return self._server.url

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. `http://127.0.0.1:40123/v1`."""
        return f"{self.url}/v1"

    @property
    def control(self) -> SimulatorControl:
        """A client of this server's control API (closed by `stop()`)."""
        if self._control is None:
            self._control = SimulatorControl(self.url)
        return self._control

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Bind, start serving in a thread, and wait until connections are accepted."""
        self._server.start(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and wait for its thread; safe to call twice."""
        if self._control is not None:
            self._control.close()
            self._control = None
        self._server.stop(timeout)

    def __enter__(self) -> SimulatorServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
