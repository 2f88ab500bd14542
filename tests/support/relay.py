"""A TCP relay on loopback that a test puts between the gateway and a server, and cuts.

Stopping or breaking the shared PostgreSQL server is never an option (other tests use it):
the gateway reaches it through this relay instead, and the test makes the store fail by
cutting the relay. :meth:`TcpRelay.blackhole` keeps every connection open and drops what is
sent, the way a dead network path or a hung server looks (nothing fails, nothing answers);
:meth:`TcpRelay.refuse` closes every connection and refuses new ones; :meth:`TcpRelay.restore`
brings the path back.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["TcpRelay", "relay_to"]

T = TypeVar("T")


class TcpRelay:
    """Forwards ``127.0.0.1:<port>`` to ``target`` from a thread of its own until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="relay")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._dropping = False
        # Connections that lost bytes (or were accepted) while dropping: a byte stream with a
        # hole in it is no connection; restore() closes them, the way TCP resets a dead one.
        self._lost: set[asyncio.StreamWriter] = set()
        self.port = 0

    def start(self) -> TcpRelay:
        """Listen on an ephemeral loopback port (``port``) and start relaying."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accepted, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def blackhole(self) -> None:
        """From now on, drop every byte both ways; connections stay open, new ones too."""
        self._dropping = True

    def restore(self) -> None:
        """Relay again after :meth:`blackhole`: new connections reach the target, and those
        that lost bytes meanwhile are closed (their peers see them fail)."""
        self._call(self._restore())

    def refuse(self) -> None:
        """Close every connection and stop listening: connecting is refused."""
        self._call(self._refuse())

    def stop(self) -> None:
        """Close everything and end the thread."""
        with contextlib.suppress(RuntimeError):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _refuse(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _restore(self) -> None:
        self._dropping = False
        for writer in list(self._lost):
            writer.transport.abort()
            self._writers.discard(writer)
        self._lost.clear()

    async def _close(self) -> None:
        await self._refuse()
        # Every transport is aborted: the pumps read their end and finish by themselves.
        pumps = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if pumps:
            await asyncio.wait(pumps, timeout=5)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self._dropping:
            self._lost.add(writer)
            await self._pump(reader, None)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        pair = (writer, up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
        )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        pair: tuple[asyncio.StreamWriter, ...] = (),
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self._dropping:
                    self._lost.update(pair)
                elif writer is not None:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if writer is not None and not self._dropping:
                writer.transport.abort()


@contextlib.contextmanager
def relay_to(host: str, port: int) -> Iterator[TcpRelay]:
    """A started relay to ``host:port``, stopped after."""
    relay = TcpRelay(host, port).start()
    try:
        yield relay
    finally:
        relay.stop()
