"""Run the simulator with uvicorn in a background thread with its own event loop.

The listening socket is bound before the thread starts, so port 0 yields a known ephemeral port
and there is no window in which a client could be refused.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from proxy.simulator.app import SimulatorApp, create_app
from proxy.simulator.client import SimulatorControl
from proxy.simulator.config import SimulatorConfig

__all__ = ["SimulatorServer", "bind_socket", "uvicorn_config"]

_POLL_SECONDS = 0.005


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: an ephemeral port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto is IPPROTO_TCP, and accepted sockets inherit it. With proto 0, each response written in
    # two pieces waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(
    app: SimulatorApp, *, log_level: str = "warning", quiet: bool = True
) -> uvicorn.Config:
    """The uvicorn settings that keep the simulator cheap.

    No access log, no proxy-header middleware, no lifespan; `http="auto"` picks httptools when it
    is installed, else h11. `quiet=True` leaves the process's logging handlers alone (uvicorn would
    otherwise install its own), as a server running inside someone else's tests should.
    """
    return uvicorn.Config(
        app,
        loop="asyncio",
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
        self._requested_port = port
        self._port: int | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._control: SimulatorControl | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known once started)."""
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. `http://127.0.0.1:40123`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        self._socket = bind_socket(self.host, self._requested_port)
        self._port = self._socket.getsockname()[1]
        self._server = server = uvicorn.Server(uvicorn_config(self.app))
        self._thread = thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [self._socket]},
            name=f"simulator-{self.port}",
            daemon=True,  # a test that forgets stop() must not hang the interpreter at exit
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the simulator failed to start")
            time.sleep(_POLL_SECONDS)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and wait for its thread; safe to call twice."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

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
