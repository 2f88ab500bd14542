"""The control API under `/_sim/`: lets a test steer the simulator through any gateway in between.

- `GET /_sim/faults`: the current server-wide faults and the `times` left (null: until reset).
- `POST /_sim/faults`: JSON object of `Faults` fields, plus optional `"times": k`. The fields are
  laid over the config's defaults and replace any earlier server-wide faults; with `times` they
  apply to the next k API requests (every non-control request counts), then the defaults return.
- `DELETE /_sim/faults`: back to the config's defaults.
- `GET /_sim/stats` / `DELETE /_sim/stats`: requests per path and the usage reported on the wire.
- `GET /_sim/requests` / `DELETE /_sim/requests`: the last received API requests.
- `POST /_sim/reset`: all three resets at once.

Control requests are never counted, logged or subject to faults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec

from proxy.simulator.config import faults_from_control
from proxy.simulator.errors import SimulatorError
from proxy.simulator.exchange import Send, send_json
from proxy.simulator.state import SimulatorState

__all__ = ["CONTROL_PREFIX", "handle_control"]

CONTROL_PREFIX = "/_sim/"
"""Paths under this prefix belong to the control API."""

_Action = Callable[[SimulatorState, bytes], object]
_Times = Annotated[int, msgspec.Meta(ge=1)] | None


def _set_faults(state: SimulatorState, body: bytes) -> object:
    try:
        fields = msgspec.json.decode(body or b"{}", type=dict[str, object])
        times = msgspec.convert(fields.pop("times", None), _Times)
        faults = faults_from_control(state.config.faults, fields)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise SimulatorError(400, f"Invalid faults: {exc}") from None
    state.set_faults(faults, times)
    return state.faults_view()


def _reset_faults(state: SimulatorState, body: bytes) -> object:
    state.reset_faults()
    return state.faults_view()


def _reset_stats(state: SimulatorState, body: bytes) -> object:
    state.reset_stats()
    return state.stats()


def _clear_requests(state: SimulatorState, body: bytes) -> object:
    state.clear_requests()
    return state.requests()


def _reset(state: SimulatorState, body: bytes) -> object:
    state.reset_faults()
    state.reset_stats()
    state.clear_requests()
    return {"reset": True}


_ROUTES: dict[str, dict[str, _Action]] = {
    "faults": {
        "GET": lambda state, body: state.faults_view(),
        "POST": _set_faults,
        "DELETE": _reset_faults,
    },
    "stats": {"GET": lambda state, body: state.stats(), "DELETE": _reset_stats},
    "requests": {"GET": lambda state, body: state.requests(), "DELETE": _clear_requests},
    "reset": {"POST": _reset},
}


async def handle_control(
    state: SimulatorState, method: str, path: str, body: bytes, send: Send
) -> None:
    """Answer one `/_sim/...` request."""
    try:
        actions = _ROUTES.get(path.removeprefix(CONTROL_PREFIX))
        if actions is None:
            raise SimulatorError(404, f"Invalid URL ({method} {path})")
        action = actions.get(method)
        if action is None:
            raise SimulatorError(405, f"Method {method} not allowed on {path}")
        payload = msgspec.json.encode(action(state, body))
    except SimulatorError as error:
        await send_json(send, error.status, error.body())
        return
    await send_json(send, 200, payload)
