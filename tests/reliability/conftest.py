"""Fixtures: the simulated upstream (requiring its own key), and gateways in this process
built from the same TOML files that ``tallygate serve`` reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import Settings, load_settings
from metering.store.sqlite import SQLiteStore
from proxy.app import ROLLUP_EXTRA_KEYS, create_app, sqlite_path
from proxy.auth import KeyAuthenticator
from proxy.background import BackgroundServer
from proxy.key_admin import issue_key
from proxy.keys import hash_key
from proxy.simulator import SimulatorServer
from proxy.simulator.config import SimulatorConfig
from proxy.state import system_clock
from tests.reliability.support import ADMIN_KEY, UPSTREAM_KEY, stored_events, write_config


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(api_key=UPSTREAM_KEY)) as sim:
        yield sim


class LocalGateway:
    """A gateway app served by uvicorn from a thread of this process."""

    def __init__(self, server: BackgroundServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings

    @property
    def url(self) -> str:
        """The gateway's root URL."""
        return self.server.url

    @property
    def db(self) -> Path:
        """The store's SQLite file."""
        return sqlite_path(self.settings.store.url)

    def new_key(self, customer: str = "acme") -> str:
        """A key minted straight into the store (what ``keys create`` does)."""

        async def mint() -> str:
            store = SQLiteStore(self.db, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
            await store.open()
            try:
                issued = await issue_key(
                    store, self.settings, customer=customer, now=system_clock()
                )
            finally:
                await store.close()
            return issued.secret

        # Its own loop in its own thread: callable from sync and async tests alike.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, mint()).result()

    def revoke(self, secret: str) -> None:
        """Revoke a key in the store (what ``keys revoke`` does from another process)."""

        async def revoke() -> None:
            store = SQLiteStore(self.db, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
            await store.open()
            try:
                record = await store.get_key(key_hash=hash_key(secret))
                await KeyAuthenticator(store).revoke(record.id, system_clock())
            finally:
                await store.close()

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, revoke()).result()

    def event_count(self) -> int:
        """How many events the store holds."""
        return len(stored_events(self.db))


GatewayFactory = Callable[..., LocalGateway]


@pytest.fixture
def make_gateway(tmp_path: Path, simulator: SimulatorServer) -> Iterator[GatewayFactory]:
    """``make_gateway(upstream_url=..., server={...}, upstream={...})`` starts one gateway."""
    started: list[BackgroundServer] = []

    def make(upstream_url: str | None = None, **sections: dict[str, object]) -> LocalGateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        config = write_config(directory, upstream_url or simulator.base_url, port=0, **sections)
        env = {"SIM_UPSTREAM_KEY": UPSTREAM_KEY, "TALLYGATE_ADMIN_KEY": ADMIN_KEY}
        settings = load_settings(config, env=env)
        server = BackgroundServer(create_app(settings), lifespan="on", name="gateway").start()
        started.append(server)
        return LocalGateway(server, settings)

    yield make
    for server in started:
        server.stop()
