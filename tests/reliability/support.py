"""A gateway as a user runs it: ``tallygate serve`` in its own process, a TOML file, a SQLite
file, the simulated upstream on loopback; plus what the tests read back (events, logs)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from proxy.background import bind_socket

#: The upstream's own key (the simulator requires it): it must never reach a client or a log.
UPSTREAM_KEY = "sk-upstream-SECRET-0123456789abcdef"
ADMIN_KEY = "admin-SECRET-key-0123456789"
MODEL = "gpt-4o-mini"
TALLYGATE = str(Path(sys.executable).with_name("tallygate"))


def free_port() -> int:
    """A port that was free a moment ago (the gateway binds it itself)."""
    with bind_socket("127.0.0.1", 0) as sock:
        port: int = sock.getsockname()[1]
    return port


def _toml_value(value: object) -> str:
    return json.dumps(value)  # strings, numbers and booleans are spelt alike in TOML


def write_config(
    directory: Path,
    upstream_url: str,
    *,
    port: int,
    server: dict[str, object] | None = None,
    store: dict[str, object] | None = None,
    upstream: dict[str, object] | None = None,
) -> Path:
    """A TOML file serving ``gpt-4o-mini`` and ``gpt-4o`` through ``upstream_url`` only."""
    sections: dict[str, dict[str, object]] = {
        "server": {"host": "127.0.0.1", "port": port, **(server or {})},
        "store": {"url": f"sqlite:///{directory / 'gateway.db'}", **(store or {})},
        "upstreams.sim": {
            "base_url": upstream_url,
            "api_key_env": "SIM_UPSTREAM_KEY",
            **(upstream or {}),
        },
        f'models."{MODEL}"': {"upstream": "sim", "input_per_1m": "0.15", "output_per_1m": "0.6"},
        'models."gpt-4o"': {"upstream": "sim", "input_per_1m": "2.5", "output_per_1m": "10"},
    }
    lines = ["use_default_catalog = false"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path = directory / "tallygate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def child_env() -> dict[str, str]:
    """This process's environment without tallygate's variables, plus the two secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYGATE_")}
    env["SIM_UPSTREAM_KEY"] = UPSTREAM_KEY
    env["WRONG_UPSTREAM_KEY"] = "sk-wrong-0123456789abcdef"
    env["TALLYGATE_ADMIN_KEY"] = ADMIN_KEY
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServedGateway:
    """``tallygate serve`` on a config file; start, signal and restart it on the same store."""

    config: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    keys: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The gateway's root URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        """The SQLite file of the store."""
        return self.config.parent / "gateway.db"

    def create_key(self, customer: str = "acme") -> str:
        """A key made the way a user makes one: ``tallygate keys create``."""
        done = subprocess.run(
            [TALLYGATE, "--config", str(self.config), "keys", "create", "--customer", customer],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
            check=True,
        )
        key = next(
            line.split()[-1] for line in done.stdout.splitlines() if line.startswith("api key:")
        )
        self.keys.append(key)
        return key

    def start(self, timeout: float = 60) -> ServedGateway:
        """Start the process (appending to its log) and wait until it answers /healthz."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [TALLYGATE, "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=self.config.parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the gateway did not come up:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the process."""
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to end; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        """End the process if it still runs (SIGKILL after a grace of SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Every stored event (see :func:`stored_events`)."""
        return stored_events(self.db)


def stored_events(db: Path) -> list[dict[str, Any]]:
    """Every event in a store's file: transaction id, subscription, and its properties."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT transaction_id, external_subscription_id, properties FROM events"
        ).fetchall()
    finally:
        conn.close()
    return [{"transaction_id": t, "subscription": s, **json.loads(p)} for t, s, p in rows]


def served_gateway(
    directory: Path,
    upstream_url: str,
    *,
    server: dict[str, object] | None = None,
    store: dict[str, object] | None = None,
    upstream: dict[str, object] | None = None,
) -> ServedGateway:
    """A configured (not yet started) gateway process in ``directory``."""
    port = free_port()
    config = write_config(
        directory, upstream_url, port=port, server=server, store=store, upstream=upstream
    )
    return ServedGateway(config=config, port=port, log_path=directory / "gateway.log")


def usage_by_request(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """request id -> {token type: tokens}; a duplicate event would show as a repeated type."""
    found: dict[str, dict[str, int]] = {}
    for event in events:
        request_id, _, type_ = event["transaction_id"].rpartition(":")
        per_type = found.setdefault(request_id, {})
        assert type_ not in per_type, f"duplicate event {event['transaction_id']}"
        per_type[type_] = int(event["tokens"])
    return found


async def until(check: Callable[[], object], *, within: float = 60, pause: float = 0.02) -> None:
    """Poll ``check`` (sync or async) until it is true: the state lives in another process,
    so there is no event to wait on. Fails after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(pause)
