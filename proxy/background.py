"""Serving an ASGI app with uvicorn on a pre-bound socket, optionally from a background thread.

Used by ``tallygate serve`` and ``demo``, by the simulator, and by tests that need a real
server on loopback (the official SDKs as clients). The socket is bound before serving, so
port 0 yields a known ephemeral port and no client is ever refused during start-up.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn

from proxy.http_protocol import CoalescingHttpToolsProtocol

__all__ = ["BackgroundServer", "bind_socket"]

_POLL_SECONDS = 0.005


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: an ephemeral port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto is IPPROTO_TCP, and accepted sockets inherit it. With proto 0, each response written
    # in two pieces waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundServer:
    """An ASGI app served by uvicorn from a daemon thread; a context manager.

    ``lifespan="on"`` runs the app's start-up and shutdown (the gateway needs it).
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["on", "off"] = "off",
        name: str = "server",
        graceful_seconds: int = 2,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """``tls``: the certificate chain and private key files (PEM) to serve HTTPS with."""
        self.app = app
        self.host = host
        self._requested_port = port
        self._lifespan = lifespan
        self._name = name
        self._graceful = graceful_seconds
        self._tls = tls
        self._port: int | None = None
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (known once started)."""
        if self._port is None:
            raise RuntimeError(f"the {self._name} is not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:40123`` (``https://`` with TLS)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Bind, serve in a thread, and wait until connections are accepted."""
        if self._thread is not None:
            raise RuntimeError(f"the {self._name} is already started")
        self._socket = bind_socket(self.host, self._requested_port)
        self._port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            http=CoalescingHttpToolsProtocol,
            lifespan=self._lifespan,
            access_log=False,
            log_level="warning",
            # Leave the process's logging alone: this server runs inside someone else's process.
            log_config=None,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=self._graceful,
            ssl_certfile=self._tls[0] if self._tls else None,
            ssl_keyfile=self._tls[1] if self._tls else None,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [self._socket]},
            name=f"{self._name}-{self._port}",
            daemon=True,  # a caller that forgets stop() must not hang the interpreter at exit
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self._name} failed to start")
            time.sleep(_POLL_SECONDS)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (running the lifespan's shutdown) and wait; safe twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> BackgroundServer:
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
