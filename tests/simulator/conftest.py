"""Fixtures: one simulator on loopback for the whole directory, reset before every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from proxy.simulator import SimulatorServer


@pytest.fixture(scope="session")
def sim() -> Iterator[SimulatorServer]:
    """A simulator with the default config, shared by the directory's tests."""
    with SimulatorServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_simulator(sim: SimulatorServer) -> None:
    """Every test starts with default faults, zero counters and an empty request log."""
    sim.control.reset()


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[openai.OpenAI]:
    """The official sync SDK pointed at the simulator; no retries, so faults show directly."""
    with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(sim: SimulatorServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official async SDK pointed at the simulator."""
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(sim: SimulatorServer) -> Iterator[httpx.Client]:
    """A raw HTTP client on the simulator's root, for byte-level checks."""
    with httpx.Client(base_url=sim.url, trust_env=False, timeout=10) as raw:
        yield raw
