"""Load for the proxy benchmark: ``wrk`` runs, and a probe of the time to the first SSE event.

``wrk`` (C, one thread) drives the load: it is cheap per request, so it leaves the two cores to
the gateway and the upstream. It measures whole responses, so the time to the first SSE event is
taken by :func:`first_event_times`, a blocking raw-socket client that sends one request at a time
on a kept-alive connection and notes when the first complete ``data:`` event has arrived; its own
cost is the same for both targets, so the difference is the gateway's.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["WrkResult", "first_event_times", "require_wrk", "run_wrk"]

WRK_HINT = (
    "bench: wrk is not installed. Install it from Debian/Ubuntu with `apt-get install wrk` "
    "(macOS: `brew install wrk`), then run again."
)

_LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %.1f, "p90": %.1f, "p99": %.1f, "max": %.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def require_wrk() -> str:
    """The wrk binary, or exit with how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(WRK_HINT)
    return found


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: completed requests, seconds, errors and latency percentiles (ms)."""

    requests: int
    seconds: float
    errors: int
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds


def run_wrk(
    url: str, *, key: str, body: bytes, connections: int, seconds: float, workdir: Path
) -> WrkResult:
    """POST ``body`` to ``url`` over ``connections`` kept-alive connections for ``seconds``."""
    script = workdir / "post.lua"
    script.write_text(_LUA.format(body=body.decode(), key=key))
    argv = [
        require_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=errors,
        p50=raw["p50"] / 1000,
        p90=raw["p90"] / 1000,
        p99=raw["p99"] / 1000,
        max=raw["max"] / 1000,
    )


class _Conn:
    """A kept-alive HTTP/1.1 connection that reads chunked or sized responses by hand."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.sock = socket.create_connection((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._more()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def exchange(self, request: bytes) -> tuple[float, float]:
        """Send one request; seconds to the first complete SSE event and to the end."""
        start = time.perf_counter()
        self.sock.sendall(request)
        status = self._take_line()
        if b" 200 " not in status + b" ":
            raise RuntimeError(f"probe got {status!r}")
        headers = {}
        while line := self._take_line():
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        first = 0.0
        if headers.get(b"transfer-encoding") != b"chunked":
            body = self._take(int(headers[b"content-length"]))
            first = time.perf_counter()
        else:
            while size := int(self._take_line().split(b";")[0], 16):
                body += self._take(size)
                self._take(2)
                if not first and b"\n\n" in body:
                    first = time.perf_counter()
            self._take_line()  # the blank line after the last chunk (no trailers)
        if b"data: [DONE]" not in body:
            raise RuntimeError("probe: the stream did not end with [DONE]")
        return first - start, time.perf_counter() - start


def first_event_times(url: str, *, key: str, body: bytes, count: int) -> list[float]:
    """Seconds to the first SSE event of ``count`` sequential streamed requests."""
    parts = urlsplit(url)
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    conn = _Conn(url)
    try:
        for _ in range(5):  # warm-up: connection set-up, first-request caches
            conn.exchange(request)
        return [conn.exchange(request)[0] for _ in range(count)]
    finally:
        conn.close()
