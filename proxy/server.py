"""``tallygate serve``: the gateway under uvicorn."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn
from litestar import Litestar

from config import Settings
from proxy.app import create_app, describe_store, is_postgres, sqlite_path
from proxy.background import bind_socket
from proxy.http_protocol import CoalescingHttpToolsProtocol
from proxy.state import Gateway

__all__ = ["GatewayServer", "serve"]


class GatewayServer(uvicorn.Server):
    """uvicorn's server, except that a requested shutdown that completes exits with status 0,
    and what start-up built is frozen out of the garbage collector's full collections.

    uvicorn re-raises the captured SIGINT/SIGTERM after shutting down, so the process would
    die by the signal (status -2/-15) even after draining cleanly; supervisors then report a
    crash. A second SIGINT still forces an immediate exit, as in uvicorn.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, with the gateway told first: writes of usage to a failing store
        then end within the same grace as the requests in flight, not in a grace after it."""
        app = self.config.app
        gateway = app.state.get("gateway") if isinstance(app, Litestar) else None
        if isinstance(gateway, Gateway):  # absent if start-up failed
            gateway.begin_shutdown()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up (the app's lifespan, the listening sockets), then ``gc.freeze()``.

        Everything start-up made (modules, the app, Litestar's and msgspec's tables, the
        catalog) lives as long as the process, yet every full collection walked all of it:
        under load, objects of requests in flight outlive two young collections, so full
        collections came about twice a second and each stopped the loop for ~22 ms
        (bench/RESULTS.md; p99 +30 ms at c=64). Frozen objects are skipped by collections, so
        a full one now looks only at what traffic made. This is the process's own choice,
        hence here and not in ``create_app`` (an embedding process, such as a test run, keeps
        its collector as it is).
        """
        await super().startup(sockets)
        if not self.should_exit:
            gc.collect()  # what start-up left as garbage is freed, not frozen
            gc.freeze()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Handle SIGINT/SIGTERM by asking the server to exit (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    """Run the gateway until interrupted; returns the exit status."""
    url = settings.store.url
    if not is_postgres(url) and not sqlite_path(url).parent.exists():
        print(
            f"tallygate: the store's directory {sqlite_path(url).parent} does not exist",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every upstream request at INFO: a formatted line per request on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    config = uvicorn.Config(
        create_app(settings, preload_tokenizers=True),
        host=bind_host,
        port=bind_port,
        access_log=False,
        log_level="info",
        lifespan="on",
        # httptools, with a response's writes of one loop turn sent together (proxy.http_protocol).
        http=CoalescingHttpToolsProtocol,
        # In-flight streams may finish within this; then uvicorn cancels them, their relays
        # meter what was generated, and the lifespan drains that work and the event queue.
        timeout_graceful_shutdown=settings.server.shutdown_grace_seconds,
    )
    logging.getLogger("tallygate").info(
        "tallygate on http://%s:%d/v1 (store %s)", bind_host, bind_port, describe_store(url)
    )
    try:
        # Our own socket: explicit IPPROTO_TCP so asyncio sets TCP_NODELAY (proxy.background).
        sock = bind_socket(bind_host, bind_port)
    except OSError as exc:
        print(
            f"tallygate: cannot listen on {bind_host}:{bind_port}: {exc.strerror}", file=sys.stderr
        )
        return 2
    with sock:
        # A failed start-up (the lifespan raised) exits from here with uvicorn's status 3,
        # after its log line (one line for proxy.startup.StartupFailed).
        GatewayServer(config).run(sockets=[sock])
    return 0
