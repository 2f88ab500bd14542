"""A simulated OpenAI upstream on loopback, for the demo, the test suite and the benchmarks.

`SimulatorServer` serves it from a background thread; `create_app` gives the bare ASGI app;
`SimulatorControl` steers a running simulator (faults, stats, request log) over HTTP. Token counts
follow the deterministic rule documented in `proxy.simulator.tokens`.
"""

from proxy.simulator.app import SimulatorApp, create_app
from proxy.simulator.client import SimulatorControl
from proxy.simulator.config import DEFAULT_MODELS, Faults, SimulatorConfig
from proxy.simulator.server import SimulatorServer
from proxy.simulator.tokens import Usage, words

__all__ = [
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
