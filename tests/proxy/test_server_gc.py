"""``tallygate serve``'s server freezes what start-up built out of the collector's reach."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx
import uvicorn

from config import load_settings
from proxy.app import create_app
from proxy.background import bind_socket
from proxy.demo import demo_settings
from proxy.server import GatewayServer


async def test_startup_freezes_the_app_and_the_server_still_answers(tmp_path: Path) -> None:
    settings = demo_settings(
        load_settings(env={}), upstream_url="http://127.0.0.1:9", db=tmp_path / "t.db", port=0
    )
    app = create_app(settings)
    config = uvicorn.Config(app, lifespan="on", log_config=None, http="httptools")
    server = GatewayServer(config)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    frozen_before = gc.get_freeze_count()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        # The app (and the rest of start-up's objects) now sit in the permanent generation.
        assert gc.get_freeze_count() > frozen_before + 10_000
        assert not any(found is app for found in gc.get_objects(generation=2))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            refused = await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
            assert refused.status_code == 401
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()  # this test process keeps its collector as it was
        sock.close()
