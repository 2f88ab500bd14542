"""A real gateway on loopback in front of the real simulator, each in its own server thread."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from config import Settings, load_settings
from metering.store.sqlite import SQLiteStore
from proxy.app import ROLLUP_EXTRA_KEYS, create_app, sqlite_path
from proxy.background import BackgroundServer
from proxy.demo import demo_settings
from proxy.key_admin import issue_key
from proxy.simulator import SimulatorServer
from proxy.state import system_clock


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer() as sim:
        yield sim


@pytest.fixture
def settings(tmp_path: Path, simulator: SimulatorServer) -> Settings:
    return demo_settings(
        load_settings(env={}), upstream_url=simulator.base_url, db=tmp_path / "t.db", port=0
    )


class Gateway:
    """A running gateway: its URL, and a way to mint keys straight into its store."""

    def __init__(self, server: BackgroundServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings
        self._clients: list[openai.OpenAI] = []

    def client(self, key: str) -> openai.OpenAI:
        """An official SDK client with this key, closed when the gateway stops."""
        client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0)
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        """Close every SDK client handed out (their sockets must not leak into later tests)."""
        for client in self._clients:
            client.close()
        self._clients.clear()

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1"

    def new_key(self, customer: str = "acme", **kwargs: str) -> str:
        async def mint() -> str:
            store = SQLiteStore(
                sqlite_path(self.settings.store.url), rollup_extra_keys=ROLLUP_EXTRA_KEYS
            )
            await store.open()
            try:
                issued = await issue_key(
                    store, self.settings, customer=customer, now=system_clock(), **kwargs
                )
            finally:
                await store.close()
            return issued.secret

        return asyncio.run(mint())


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Gateway]:
    with BackgroundServer(create_app(settings), lifespan="on", name="gateway") as server:
        running = Gateway(server, settings)
        yield running
        running.close_clients()


@pytest.fixture
def api_key(gateway: Gateway) -> str:
    return gateway.new_key()
