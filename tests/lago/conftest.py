"""A real gateway with the admin API enabled, for the Lago-compatible routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from lago_python_client.client import Client

from config import Settings, load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer

ADMIN_KEY = "admin-test-key"


#: The keys of an event object in Lago's answers, in Lago's order.
LAGO_EVENT_KEYS = (
    "lago_id",
    "transaction_id",
    "lago_customer_id",
    "lago_subscription_id",
    "external_subscription_id",
    "code",
    "timestamp",
    "precise_total_amount_cents",
    "properties",
    "created_at",
)


class AdminGateway:
    """A running gateway and how to reach its admin API."""

    def __init__(self, server: BackgroundServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings

    @property
    def api_url(self) -> str:
        """The Lago API base (``lago-python-client`` appends ``/api/v1/...``)."""
        return self.server.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def admin_settings(tmp_path: Path) -> Settings:
    settings = load_settings(env={"TALLYGATE_STORE__URL": f"sqlite:///{tmp_path / 'lago.db'}"})
    return msgspec.structs.replace(
        settings, secrets={**settings.secrets, settings.admin.api_key_env: ADMIN_KEY}
    )


@pytest.fixture
def admin_gateway(admin_settings: Settings) -> Iterator[AdminGateway]:
    with BackgroundServer(create_app(admin_settings), lifespan="on", name="gateway") as server:
        yield AdminGateway(server, admin_settings)


@pytest.fixture
def lago(admin_gateway: AdminGateway) -> Client:
    """The unmodified lago-python-client pointed at the gateway."""
    return Client(api_key=ADMIN_KEY, api_url=admin_gateway.api_url)


@pytest.fixture
def http(admin_gateway: AdminGateway) -> Iterator[httpx.Client]:
    """A raw HTTP client on ``/api/v1`` with the admin key, for exact envelopes."""
    with httpx.Client(
        base_url=f"{admin_gateway.api_url.rstrip('/')}/api/v1", headers=admin_gateway.headers
    ) as client:
        yield client
