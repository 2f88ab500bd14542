"""The gateway's lean upstream transport, through httpx, against real loopback servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from proxy.simulator import SimulatorServer
from proxy.upstream_transport import UpstreamTransport

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three"}]}

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback TCP server running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=UpstreamTransport(), timeout=5) as http:
        yield http


async def test_json_and_streamed_answers_from_the_simulator(client: httpx.AsyncClient) -> None:
    with SimulatorServer() as sim:
        plain = await client.post(f"{sim.base_url}/chat/completions", json=CHAT)
        assert plain.status_code == 200
        assert plain.json()["usage"]["completion_tokens"] == 16
        assert plain.headers["content-type"] == "application/json"

        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        request = client.build_request("POST", f"{sim.base_url}/chat/completions", json=body)
        response = await client.send(request, stream=True)
        raw = b"".join([piece async for piece in response.aiter_raw()])
        await response.aclose()
        assert raw.endswith(b"data: [DONE]\n\n")
        assert raw.count(b'"completion_tokens":16') == 1

        missing = await client.post(f"{sim.base_url}/nowhere", json=CHAT)
        assert missing.status_code == 404
        assert sim.control.stats()["total_requests"] == 3


async def test_kept_alive_connections_are_reused(client: httpx.AsyncClient) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    server = RawServer(answer)
    async with server as url:
        for number in range(3):
            reply = await client.post(url, content=b"n%d" % number)
            assert reply.content == b"n%d" % number
    assert server.connections == 1


async def test_connection_close_and_close_delimited_bodies(client: httpx.AsyncClient) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the ")
        await writer.drain()
        writer.write(b"end")

    server = RawServer(answer)
    async with server as url:
        assert (await client.post(url, content=b"x")).content == b"until the end"
        assert (await client.post(url, content=b"x")).content == b"until the end"
    assert server.connections == 2


async def test_an_idle_connection_closed_by_the_upstream_is_replaced(
    client: httpx.AsyncClient,
) -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)  # then drop the kept-alive connection without a word

    server = RawServer(answer_once)
    async with server as url:
        assert (await client.post(url, content=b"a")).content == b"ok"
        await asyncio.sleep(0.2)
        assert (await client.post(url, content=b"b")).content == b"ok"
    assert server.connections == 2


async def test_a_body_cut_short_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')

    async with RawServer(cut) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")


async def test_garbage_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"this is not HTTP\r\n\r\n")
        await asyncio.sleep(1)

    async with RawServer(garbage) as url:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"x")


async def test_timeouts_and_refused_connections(client: httpx.AsyncClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    server = RawServer(silent)
    async with server as url:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"x", timeout=httpx.Timeout(5, read=0.1))
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{port}/", content=b"x")


async def test_a_large_streamed_body_arrives_whole(client: httpx.AsyncClient) -> None:
    payload = json.dumps({"blob": "x" * 3_000_000}).encode()

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
        for start in range(0, len(payload), 65536):
            writer.write(payload[start : start + 65536])
            await writer.drain()

    async with RawServer(big) as url:
        response = await client.send(client.build_request("POST", url, content=b"x"), stream=True)
        received = bytearray()
        async for piece in response.aiter_raw():
            received += piece
            await asyncio.sleep(0)  # a slow consumer: the transport must pause and resume
        await response.aclose()
        assert bytes(received) == payload


async def test_exchange_reads_whole_bodies_large_cut_and_late() -> None:
    """``exchange(...).aread()`` (the gateway's non-streamed path) past the pause threshold,
    then a body cut short and one that never comes, each on its own connection."""
    payload = json.dumps({"blob": "y" * 3_000_000}).encode()
    timeouts = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_request(reader)
        if body == b"big":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
            for start in range(0, len(payload), 65536):
                writer.write(payload[start : start + 65536])
                await writer.drain()
            body = await read_request(reader)  # the connection was kept for the next one
        if body == b"cut":
            writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')
        elif body == b"late":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
            await asyncio.sleep(5)

    transport = UpstreamTransport()
    server = RawServer(answers)
    try:
        async with server as url:
            big = await transport.exchange(url + "/", [], b"big", timeouts)
            assert await big.aread() == payload
            cut = await transport.exchange(url + "/", [], b"cut", timeouts)
            with pytest.raises(httpx.RemoteProtocolError):
                await cut.aread()
            late = await transport.exchange(url + "/", [], b"late", {**timeouts, "read": 0.1})
            with pytest.raises(httpx.ReadTimeout):
                await late.aread()
    finally:
        await transport.aclose()
    assert server.connections == 2  # big and cut shared one; the cut one was not reused
