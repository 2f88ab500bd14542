"""Event ingestion through the Lago batch API (``POST /api/v1/events/batch``), events/s.

The issue's target (>= 20,000 events/s into SQLite) is measured end to end: a real
``tallygate serve`` process on a fresh SQLite file per round, and this process as the client,
posting 100-event batches (the API's maximum) over keep-alive connections from
``--connections`` concurrent asyncio tasks. Bodies are encoded before the clock starts; every
response must be 200 with 100 events. Reported per round: events/s (wall) and the server's CPU
seconds per 1,000 events (from ``/proc/<pid>/stat``, utime + stime), which stays comparable
when the machine is shared.

Timestamps are spread over the current month (``--spread month``, pessimistic: most events
land in distinct hour rollups) or the last minute (``--spread minute``, live traffic).

Run from the repo root: ``python -m bench.ingest_http [--rounds 5] [--events 50000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import httptools
import httpx
import msgspec

if __package__ in (None, ""):  # run as ``python bench/ingest_http.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EventFactory, Summary, machine_info, month_start, settings

BATCH = 100
ADMIN_KEY = "bench-admin-key"
CUSTOMER = "bench-http-customer"
SUBSCRIPTION = "bench-http-sub"
KEYS = ("key_bench_a", "key_bench_b", "key_bench_c", "key_bench_d")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _loop_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's main thread (the event loop: HTTP, validation, responses).

    The rest of the process's CPU is its other threads, chiefly aiosqlite's (SQLite's work
    and the Python of the write transaction).
    """
    return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def _bodies(count: int, spread: str, seed: int) -> list[bytes]:
    """``count`` batch bodies in Lago's JSON (timestamps as epoch seconds with fractions)."""
    now = datetime.now(UTC)
    start = month_start(now)
    first = start if spread == "month" else max(start, now - timedelta(minutes=1))
    factory = EventFactory(settings(), SUBSCRIPTION, first, now, KEYS, seed=seed)
    bodies = []
    for batch in factory.batches(count, BATCH):
        events = [
            {
                "transaction_id": e.transaction_id,
                "external_subscription_id": e.external_subscription_id,
                "code": e.code,
                "timestamp": e.timestamp.timestamp(),
                "properties": e.properties,
            }
            for e in batch.events
        ]
        bodies.append(msgspec.json.encode({"events": events}))
    return bodies


class Gateway:
    """A ``tallygate serve`` subprocess on a fresh SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TALLYGATE_ADMIN_KEY": ADMIN_KEY,
            "TALLYGATE_STORE__URL": f"sqlite:///{directory / 'ingest.db'}",
        }
        self.process = subprocess.Popen(
            # The console script of the interpreter running the bench (pip install -e .).
            [str(Path(sys.executable).with_name("tallygate")), "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gateway not ready within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _prepare(client: httpx.AsyncClient) -> None:
    customer = {"customer": {"external_id": CUSTOMER, "name": "Bench"}}
    (await client.post("/api/v1/customers", json=customer)).raise_for_status()
    subscription = {
        "subscription": {
            "external_customer_id": CUSTOMER,
            "plan_code": settings().metering.plan_code,
            "external_id": SUBSCRIPTION,
            "subscription_at": month_start(datetime.now(UTC)).isoformat(),
        }
    }
    (await client.post("/api/v1/subscriptions", json=subscription)).raise_for_status()


class Usage(NamedTuple):
    """What posting every body took: wall seconds and CPU seconds (server, its loop, client)."""

    wall: float
    server: float
    loop: float
    client: float


class _Response:
    """httptools callbacks: one response's status and body."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        self.complete = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class RawClient:
    """One keep-alive HTTP/1.1 connection that posts batch bodies, at a fraction of httpx's CPU.

    The client runs on the same two cores as the server: httpx's per-request cost (about as
    much CPU as the server's event loop spends on the request) would be measured as the
    server's slowness. Responses are parsed with httptools (the parser uvicorn uses).
    """

    def __init__(self, url: str) -> None:
        self._host, _, port = url.removeprefix("http://").partition(":")
        self._port = int(port)
        self._head = (
            f"POST /api/v1/events/batch HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n"
            f"authorization: Bearer {ADMIN_KEY}\r\ncontent-type: application/json\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> None:
        """Post one batch; RuntimeError unless the answer is 200 with every event echoed."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(b"%scontent-length: %d\r\n\r\n%s" % (self._head, len(body), body))
        response = _Response()
        while not response.complete:
            chunk = await self._reader.read(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            response.parser.feed_data(chunk)
        status = response.parser.get_status_code()
        echoed = response.body.count(b'"lago_id":')
        if status != 200 or echoed != BATCH:
            raise RuntimeError(f"{status} with {echoed} events: {bytes(response.body[:300])!r}")

    async def close(self) -> None:
        """Close the connection."""
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()


async def _drive(gateway: Gateway, bodies: list[bytes], connections: int, client: str) -> Usage:
    """The wall and CPU time to post every body (``client``: ``raw`` or ``httpx``)."""
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, limits=limits, timeout=60
    ) as http:
        await _prepare(http)
        queue = iter(bodies)

        async def httpx_sender() -> None:
            for body in queue:  # shared iterator: each body is sent exactly once
                response = await http.post("/api/v1/events/batch", content=body)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

        async def raw_sender() -> None:
            connection = RawClient(gateway.url)
            try:
                for body in queue:
                    await connection.post(body)
            finally:
                await connection.close()

        sender = raw_sender if client == "raw" else httpx_sender

        pid = gateway.process.pid
        cpu_before, loop_before = _cpu_seconds(pid), _loop_cpu_seconds(pid)
        client_before = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(connections)))
        elapsed = time.perf_counter() - began
        return Usage(
            wall=elapsed,
            server=_cpu_seconds(pid) - cpu_before,
            loop=_loop_cpu_seconds(pid) - loop_before,
            client=time.process_time() - client_before,
        )


def main() -> None:
    """Run the rounds and print events/s and server CPU per 1,000 events."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=50_000, help="events per round")
    parser.add_argument("--connections", type=int, default=16, help="concurrent clients")
    parser.add_argument("--spread", choices=("month", "minute"), default="month")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: a cheap httptools-parsed connection per sender; httpx: one AsyncClient",
    )
    args = parser.parse_args()
    print(" ".join(f"{k}={v}" for k, v in machine_info().items()))
    rates: list[float] = []
    cpus: list[float] = []
    loops: list[float] = []
    clients: list[float] = []
    count = max(1, args.events // BATCH)
    for number in range(args.rounds):
        bodies = _bodies(count, args.spread, seed=number + 1)
        with tempfile.TemporaryDirectory(prefix="tallygate-bench-") as tmp:
            gateway = Gateway(Path(tmp))
            try:
                gateway.wait_ready()
                usage = asyncio.run(_drive(gateway, bodies, args.connections, args.client))
            finally:
                gateway.stop()
        events = count * BATCH
        rates.append(events / usage.wall)
        cpus.append(usage.server / events * 1000)
        loops.append(usage.loop / events * 1000)
        clients.append(usage.client / events * 1000)
        print(
            f"round {number + 1}: {events} events in {usage.wall:.2f} s = {rates[-1]:,.0f} "
            f"events/s, server CPU {cpus[-1] * 1000:.0f} ms per 1,000 events (event loop "
            f"thread {loops[-1] * 1000:.0f}, other threads {(cpus[-1] - loops[-1]) * 1000:.0f}), "
            f"client {clients[-1] * 1000:.0f} ms (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    rate, cpu_summary = Summary.of(rates), Summary.of(cpus)
    loop_summary, client_summary = Summary.of(loops), Summary.of(clients)
    print(
        f"\n{args.rounds} rounds x {count * BATCH} events, batches of {BATCH}, "
        f"{args.connections} connections ({args.client} client), "
        f"timestamps over the {args.spread}:\n"
        f"  events/s median {rate.median:,.0f} (min {rate.low:,.0f}, max {rate.high:,.0f})\n"
        f"  server CPU per 1,000 events median {cpu_summary.median * 1000:.0f} ms "
        f"(min {cpu_summary.low * 1000:.0f}, max {cpu_summary.high * 1000:.0f}), of which its "
        f"event loop thread {loop_summary.median * 1000:.0f} ms\n"
        f"  client CPU per 1,000 events median {client_summary.median * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
