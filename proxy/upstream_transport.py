"""A lean HTTP/1.1 transport for the upstream calls.

The gateway calls :meth:`UpstreamTransport.exchange` directly (proxy.upstream_client): no
httpx request, response or headers objects per call. It is also an httpx transport, for an
httpx client (used with HTTP proxies from the environment, and by tests).

httpx's default transport (httpcore over anyio) cost the gateway more CPU per request than
everything else together: the benchmark's profile (bench/RESULTS.md) showed it at ~40% of the
gateway's CPU, with per-request scans of the pool and several anyio layers per socket
operation. This transport talks HTTP/1.1 over an :class:`asyncio.Protocol`, parses responses
with httptools (the same C parser uvicorn uses), writes each request in one ``write`` and keeps
connections alive in a per-origin LIFO pool. What it does not do, httpx's default transport
would: HTTP/2, proxies, retries.

Errors are httpx's: ``ConnectError``/``ConnectTimeout`` before a connection exists,
``ReadTimeout``/``WriteTimeout`` while waiting, ``RemoteProtocolError`` for a connection closed
or garbled mid-response, so callers handle them as they did with the default transport.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import cast

import httptools
import httpx

__all__ = ["Timeouts", "UntrustedCertificate", "UpstreamResponse", "UpstreamTransport"]

_Origin = tuple[str, str, int]
#: httpx's timeout extension: seconds for "connect", "read", "write", "pool" (None: no limit).
Timeouts = dict[str, float | None]
# A response body buffered beyond this stops reading from the socket until it is consumed.
_HIGH_WATER = 256 * 1024


class UntrustedCertificate(httpx.ConnectError):
    """The upstream's TLS certificate did not verify against the trusted CAs (no retry helps)."""


class _Connection(asyncio.Protocol):
    """One upstream connection; serves one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._has_length = False
        self._keep_alive = False
        self._head: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._complete = False
        self._error: httpx.HTTPError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.started = False  # a response byte arrived for the current request

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed upstream response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._complete:
            return
        if self._status and not self._has_length and self._head is not None and self._head.done():
            # A body delimited by the end of the connection (no length, no chunking) ends here.
            self.on_message_complete()
            return
        self._fail(httpx.RemoteProtocolError("upstream closed the connection mid-response"))

    def pause_writing(self) -> None:
        loop = asyncio.get_running_loop()
        if self._writable is None or self._writable.done():
            self._writable = loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        names = {name.lower() for name, _ in self._headers}
        self._has_length = b"content-length" in names or b"transfer-encoding" in names
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # llhttp answers keep-alive only while the message is current, so note it now.
        self._keep_alive = bool(self._parser.should_keep_alive())
        self._complete = True
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        self._wake()

    # the request side

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: httpx.HTTPError) -> None:
        if self._error is None:
            self._error = error
        for future in (self._head, self._waiter):
            if future is not None and not future.done():
                future.set_exception(error)
        self.close()

    def close(self) -> None:
        """Close the socket (the connection is not reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        """Whether the finished exchange leaves the connection fit for another request."""
        return self._complete and self._keep_alive and not self.closed

    async def send(self, data: bytes, timeouts: Timeouts) -> None:
        """Write one whole request and wait for the response's status line and headers."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._status, self._has_length = [], 0, False
        self._body.clear()
        self._buffered, self._complete, self._error, self.started = 0, False, None, False
        self._keep_alive = False
        self._head = loop.create_future()
        self.transport.write(data)
        if self._writable is not None and not self._writable.done():
            await _within(self._writable, timeouts.get("write"), httpx.WriteTimeout)
        await _within(self._head, timeouts.get("read"), httpx.ReadTimeout)

    def response_head(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The status and raw headers of the response being read."""
        return self._status, self._headers

    def _take(self) -> bytes:
        """Everything received and not yet taken, as one piece; reading resumes if paused."""
        body = self._body
        piece = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return piece

    async def _more(self, read_timeout: float | None) -> bool:
        """Wait for more of the body; False once the message is complete (nothing to wait
        for), the connection's error if it failed."""
        if self._complete:
            return False
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        await _within(self._waiter, read_timeout, httpx.ReadTimeout)
        return True

    async def body(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The response body as it arrives; ends when the message is complete."""
        while True:
            if self._body:
                # Everything already received goes on as one piece: an SSE upstream sends one
                # HTTP chunk per event, and one piece per chunk would mean one parse, one
                # relay step and one client write each. Nothing waits for more data.
                yield self._take()
            elif not await self._more(read_timeout):
                return

    async def read_all(self, read_timeout: float | None) -> bytes:
        """The whole response body: :meth:`body` joined, without an async generator."""
        parts: list[bytes] = []
        while True:
            if self._body:
                parts.append(self._take())
            elif not await self._more(read_timeout):
                return parts[0] if len(parts) == 1 else b"".join(parts)


async def _within(
    future: asyncio.Future[None], seconds: float | None, error: type[httpx.TimeoutException]
) -> None:
    """Await ``future``, raising ``error`` after ``seconds`` (None: no limit).

    A timer on the future rather than ``asyncio.timeout``: no cancellation machinery per wait.
    """
    if future.done() or seconds is None:
        await future
        return
    loop = asyncio.get_running_loop()
    handle = loop.call_later(seconds, _expire, future, error)
    try:
        await future
    finally:
        handle.cancel()


def _expire(future: asyncio.Future[None], error: type[httpx.TimeoutException]) -> None:
    if not future.done():
        future.set_exception(error("upstream did not answer in time"))


class _Body(httpx.AsyncByteStream):
    """A response body that hands its connection back to the pool once fully read."""

    def __init__(
        self, pool: UpstreamTransport, origin: _Origin, conn: _Connection, timeout: float | None
    ) -> None:
        self._pool, self._origin, self._conn, self._timeout = pool, origin, conn, timeout
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._conn.body(self._timeout):
                yield piece
        except BaseException:
            self._release(reuse=False)
            raise
        self._release(reuse=True)

    def _release(self, *, reuse: bool) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self._origin, self._conn, reuse=reuse)

    async def aclose(self) -> None:
        # Closed before the end (client gone, error): the connection's state is unknown.
        self._release(reuse=False)

    async def read_all(self) -> bytes:
        """The whole body at once (then the connection goes back to the pool)."""
        try:
            content = await self._conn.read_all(self._timeout)
        except BaseException:
            self._release(reuse=False)
            raise
        self._release(reuse=True)
        return content


class UpstreamResponse:
    """An upstream's answer as the gateway uses it: status, raw headers, and the body, read
    once (streamed piece by piece, or whole with :meth:`aread`)."""

    __slots__ = ("_close", "_read", "_read_all", "_stream", "content", "headers", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: list[tuple[bytes, bytes]],
        stream: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
        read_all: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        """A response whose body comes from ``stream``; ``close`` ends the exchange early;
        ``read_all``, if given, reads the whole body in one call (instead of ``stream``)."""
        self.status_code = status_code
        #: As received (names in the upstream's case).
        self.headers = headers
        #: The whole body, once :meth:`aread` has read it.
        self.content = b""
        self._stream = stream
        self._close = close
        self._read_all = read_all
        self._read = False

    @property
    def is_success(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status_code < 300

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        return self._stream

    async def aread(self) -> bytes:
        """Read the whole body (then the connection goes back to the pool); once."""
        if not self._read:
            self._read = True
            if self._read_all is not None:
                self.content = await self._read_all()
            else:
                self.content = b"".join([piece async for piece in self._stream])
        return self.content

    async def aclose(self) -> None:
        """End the exchange (a connection whose body was not fully read is not reused)."""
        await self._close()


class UpstreamTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio with a keep-alive pool per origin (see the module docstring)."""

    def __init__(
        self,
        *,
        max_idle_per_origin: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        ssl_contexts: Mapping[tuple[str, int], ssl.SSLContext] | None = None,
    ) -> None:
        """A transport keeping up to ``max_idle_per_origin`` idle connections per origin.

        HTTPS verifies with ``ssl_contexts[(host, port)]`` where given (an upstream's own CA
        bundle), else with ``ssl_context`` (default: httpx's, the certifi bundle).
        """
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._ssl = ssl_context
        self._ssl_by_origin = dict(ssl_contexts or {})
        self._closed = False
        # URL -> its origin and request line + Host (an upstream's few endpoints, parsed once)
        self._targets: dict[str, tuple[_Origin, bytes]] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
            self._ssl.set_alpn_protocols(["http/1.1"])
        return self._ssl

    async def _connect(self, origin: _Origin, seconds: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = None
        if scheme == "https":
            tls = self._ssl_by_origin.get((host, port)) or self._ssl_context()
        opening = loop.create_connection(
            _Connection, host, port, ssl=tls, server_hostname=host if tls else None
        )
        try:
            async with asyncio.timeout(seconds):
                _, conn = await opening
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise UntrustedCertificate(
                f"the TLS certificate of {host}:{port} is not trusted: {exc.verify_message}"
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return conn

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, origin: _Origin, conn: _Connection, *, reuse: bool) -> None:
        """Give a connection back after its exchange: pooled if reusable, else closed."""
        idle = self._idle.setdefault(origin, [])
        if reuse and conn.reusable and not self._closed and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response with a streamed body (httpx's interface)."""
        url = request.url
        scheme = url.scheme
        origin: _Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts: Timeouts = request.extensions.get("timeout", {})
        data = _serialize(request, await request.aread())
        conn = await self._open(origin, data, timeouts)
        status, headers = conn.response_head()
        return httpx.Response(
            status,
            headers=headers,
            stream=_Body(self, origin, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def exchange(
        self,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """POST ``body`` to ``url`` and return the answer, its body still to be read.

        The gateway's own way in: no httpx request, response or headers objects on the way
        (they cost more CPU per call than the exchange itself). The request carries a
        ``Host`` and ``Content-Length`` besides ``headers``; no compression is asked for.
        """
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _post_target(url)
        origin, start = target
        lines = [start]
        for name, value in headers:
            if "\r" in value or "\n" in value:
                raise httpx.LocalProtocolError(f"header {name!r} has a line break in its value")
            lines += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        lines += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
        conn = await self._open(origin, b"".join(lines), timeouts)
        status, raw = conn.response_head()
        stream = _Body(self, origin, conn, timeouts.get("read"))
        return UpstreamResponse(status, raw, stream.__aiter__(), stream.aclose, stream.read_all)

    async def _open(self, origin: _Origin, data: bytes, timeouts: Timeouts) -> _Connection:
        """Send ``data`` on a pooled (else new) connection; returns it once the head is in."""
        conn = self._take_idle(origin)
        if conn is not None and not await self._exchange(conn, data, timeouts, retry=True):
            conn = None
        if conn is None:
            conn = await self._connect(origin, timeouts.get("connect"))
            await self._exchange(conn, data, timeouts, retry=False)
        return conn

    @staticmethod
    async def _exchange(conn: _Connection, data: bytes, timeouts: Timeouts, *, retry: bool) -> bool:
        """Send on ``conn``; False when a reused connection turned out dead before answering."""
        try:
            await conn.send(data, timeouts)
        except httpx.RemoteProtocolError:
            conn.close()
            if retry and not conn.started:
                # The upstream closed an idle kept-alive connection as the request went out;
                # nothing was answered, so sending it again on a fresh connection is safe.
                return False
            raise
        except BaseException:
            conn.close()
            raise
        return True

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their response does."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _post_target(url: str) -> tuple[_Origin, bytes]:
    parsed = httpx.URL(url)
    scheme = parsed.scheme
    origin = (scheme, parsed.host, parsed.port or (443 if scheme == "https" else 80))
    return origin, b"POST " + parsed.raw_path + b" HTTP/1.1\r\nhost: " + parsed.netloc + b"\r\n"


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
