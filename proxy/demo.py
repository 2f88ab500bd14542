"""``tallygate demo``: the gateway in front of the simulated OpenAI upstream, with a ready key.

Anyone can try the whole path (request, metering, ``/v1/usage``) without an OpenAI account.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from config import Settings, StoreSettings, UpstreamSettings
from metering.store.sqlite import SQLiteStore
from proxy.app import ROLLUP_EXTRA_KEYS
from proxy.key_admin import issue_key
from proxy.server import serve
from proxy.simulator import SimulatorServer
from proxy.state import system_clock

__all__ = ["demo_settings", "run_demo"]

DEMO_CUSTOMER = "demo"


def demo_settings(settings: Settings, *, upstream_url: str, db: Path, port: int) -> Settings:
    """The settings with every catalog model routed to the simulator and a demo store."""
    simulator = UpstreamSettings(base_url=upstream_url)
    models = {
        name: msgspec.structs.replace(model, upstream="simulator")
        for name, model in settings.models.items()
    }
    server = msgspec.structs.replace(settings.server, port=port)
    return msgspec.structs.replace(
        settings,
        server=server,
        store=StoreSettings(url=f"sqlite:///{db}"),
        upstreams={"simulator": simulator},
        models=models,
    )


async def _demo_key(settings: Settings, db: Path) -> str:
    store = SQLiteStore(db, rollup_extra_keys=ROLLUP_EXTRA_KEYS)
    await store.open()
    try:
        issued = await issue_key(
            store, settings, customer=DEMO_CUSTOMER, name="demo", now=system_clock()
        )
    finally:
        await store.close()
    return issued.secret


def _instructions(host: str, port: int, key: str) -> str:
    base = f"http://{host}:{port}/v1"
    return f"""
tallygate demo: the gateway on {base}, in front of a simulated OpenAI upstream.

  curl -s {base}/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello there"}}]}}'

  curl -s {base}/usage -H "Authorization: Bearer {key}"

  python - <<'PY'
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  reply = client.chat.completions.create(
      model="gpt-4o-mini", messages=[{{"role": "user", "content": "Hello there"}}])
  print(reply.usage)
  PY

Press Ctrl+C to stop.
"""


def run_demo(settings: Settings, *, port: int, db: str) -> int:
    """Start the simulator, create a demo key, print how to use it, then serve until stopped."""
    db_path = Path(db)
    with SimulatorServer() as simulator:
        demo = demo_settings(settings, upstream_url=simulator.base_url, db=db_path, port=port)
        key = asyncio.run(_demo_key(demo, db_path))
        print(_instructions(demo.server.host, port, key), flush=True)
        return serve(demo)
