"""The processes of the proxy benchmark: the simulated upstream and ``tallygate serve``.

Each runs as its own real process (its own interpreter and event loop), so the gateway's CPU
time can be read from ``/proc/<pid>/stat`` without counting the load generator or the upstream.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = [
    "CpuSample",
    "Stack",
    "machine_busy",
    "process_cpu",
    "rss_kib",
]

UPSTREAM_KEY = "sk-bench-upstream"
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a live process, in KiB (VmRSS, VmHWM)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (user, nice, system, irq, steal)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU counters at one instant: gateway, upstream, reaped children (wrk), whole machine."""

    gateway: float
    upstream: float
    children: float
    machine: float

    @classmethod
    def take(cls, stack: Stack) -> CpuSample:
        """Read every counter now."""
        children = os.times()
        return cls(
            gateway=process_cpu(stack.gateway_pid),
            upstream=process_cpu(stack.upstream_pid),
            children=children.children_user + children.children_system,
            machine=machine_busy(),
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_http(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (loopback)
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def _tallygate() -> str:
    beside = Path(sys.executable).with_name("tallygate")
    found = str(beside) if beside.exists() else shutil.which("tallygate")
    if found is None:
        raise SystemExit("bench: the tallygate command is not installed (pip install -e .)")
    return found


@dataclass
class Stack:
    """Simulator + gateway processes in a temporary directory; a context manager.

    ``chunks`` content chunks per answer, ``chunk_delay_ms`` apart in streams;
    ``upstream_loop`` is the simulator's event loop; ``tallygate`` the command that runs the
    gateway (default: the one installed beside this interpreter), e.g. another checkout's.
    """

    workdir: Path
    chunks: int = 32
    chunk_delay_ms: int = 0
    upstream_loop: str = "auto"
    tallygate: str = ""
    gateway_env: dict[str, str] = field(default_factory=dict)
    upstream_url: str = ""
    gateway_url: str = ""
    key: str = ""
    upstream_pid: int = 0
    gateway_pid: int = 0
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def db(self) -> Path:
        """The gateway's SQLite file."""
        return self.workdir / "bench.db"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env)
        self._procs.append(proc)
        return proc

    def start(self) -> Stack:
        """Start the simulator, write the config, create a key, start the gateway."""
        # The child processes get this process's environment plus their own variables.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        sim = self._spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "proxy.simulator",
                "--port",
                "0",
                "--canned",
                "--chunks",
                str(self.chunks),
                "--chunk-delay-ms",
                str(self.chunk_delay_ms),
                "--api-key",
                UPSTREAM_KEY,
                "--loop",
                self.upstream_loop,
            ],
            env,
        )
        assert sim.stdout is not None
        line = sim.stdout.readline().decode()
        match = re.search(r"(http://\S+)", line)
        if match is None:
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.upstream_url = match.group(1).removesuffix("/v1")
        self.upstream_pid = sim.pid
        port = _free_port()
        config = self.workdir / "tallygate.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
            f'[store]\nurl = "sqlite:///{self.db}"\n'
            f'[upstreams.openai]\nbase_url = "{self.upstream_url}/v1"\n'
            'api_key_env = "BENCH_UPSTREAM_KEY"\n'
        )
        gw_env = {**env, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY, **self.gateway_env}
        tallygate = self.tallygate or _tallygate()
        if self.tallygate:
            # Another checkout's command must import that checkout's code: a PYTHONPATH of
            # this one (``PYTHONPATH=. python -m bench...``) would put this tree's proxy/
            # first, and both sides of an A/B would run the same code.
            gw_env.pop("PYTHONPATH", None)
        created = subprocess.run(
            [tallygate, "--config", str(config), "keys", "create", "--customer", "bench"],
            env=gw_env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.key = re.search(r"api key:\s+(\S+)", created.stdout).group(1)  # type: ignore[union-attr]
        gateway = self._spawn("gateway", [tallygate, "--config", str(config), "serve"], gw_env)
        self.gateway_pid = gateway.pid
        self.gateway_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{self.gateway_url}/healthz", time.monotonic() + 30)
        return self

    def events(self) -> int:
        """Events committed so far in the gateway's store."""
        with sqlite3.connect(self.db) as db:
            (count,) = db.execute("SELECT count(*) FROM events").fetchone()
        return int(count)

    def stop(self) -> None:
        """SIGTERM both processes (the gateway drains its writer), then wait."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self._logs:
            log.close()
        self._procs.clear()
        self._logs.clear()

    def __enter__(self) -> Stack:
        """Start everything."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop everything."""
        self.stop()
