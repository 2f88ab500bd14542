"""The runners: the background-thread server, the bare ASGI app and `python -m proxy.simulator`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import proxy.simulator
from proxy.simulator import SimulatorServer, create_app
from tests.simulator.helpers import CHAT, USER

ROOT = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned() -> None:
    assert proxy.simulator.__all__ == [
        "DEFAULT_MODELS",
        "Faults",
        "SimulatorApp",
        "SimulatorConfig",
        "SimulatorControl",
        "SimulatorServer",
        "Usage",
        "create_app",
        "words",
    ]


def test_server_lifecycle_on_an_ephemeral_port() -> None:
    server = SimulatorServer()
    with pytest.raises(RuntimeError):
        _ = server.port

    with server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert httpx.get(f"{server.base_url}/models", trust_env=False).status_code == 200
        with pytest.raises(RuntimeError):
            server.start()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/models", trust_env=False)
    server.stop()  # a second stop is harmless


async def test_bare_asgi_app_in_process() -> None:
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        response = await client.post(CHAT, json={"model": "m", "messages": USER})

    assert response.status_code == 200
    assert response.json()["usage"]["total_tokens"] == 25
    assert app.state.stats()["total_requests"] == 1


def test_module_entry_point_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "proxy.simulator", "--port", "0", "--completion-tokens", "2"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("simulator listening on http://127.0.0.1:")
            response = httpx.post(
                f"{line.split()[-1]}/chat/completions",
                json={"model": "m", "messages": USER},
                trust_env=False,
            )
            assert response.json()["choices"][0]["message"]["content"] == "w0 w1"
        finally:
            process.terminate()
        # uvicorn re-raises the captured SIGTERM after a clean shutdown.
        assert process.wait(timeout=10) in (0, -signal.SIGTERM)
