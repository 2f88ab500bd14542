"""The simulator as a raw ASGI application: routing, authentication and request-level faults.

No framework on purpose: benchmarks run the simulator beside the gateway on two cores, so each
request should cost the simulator as little CPU as possible.

An API request goes through, in order: read the whole body; count and log it; take the server-wide
faults (counting down `times`) and lay the `x-sim-*` headers over them; wait `delay_ms`; check the
API key (401); answer an injected `status`; route (404 / 405) and run the endpoint.
"""

from __future__ import annotations

import hmac

import msgspec

from proxy.simulator.canned import CannedChat
from proxy.simulator.config import HEADER_PREFIX, Faults, SimulatorConfig, faults_from_headers
from proxy.simulator.control import CONTROL_PREFIX, handle_control
from proxy.simulator.endpoints import (
    Handler,
    chat,
    completions,
    embeddings,
    get_model,
    list_models,
    responses,
)
from proxy.simulator.errors import SimulatorError
from proxy.simulator.exchange import Exchange, Receive, Scope, Send
from proxy.simulator.state import SimulatorState

__all__ = ["SimulatorApp", "create_app"]

_CHAT_PATH = "/v1/chat/completions"
_ROUTES: dict[str, tuple[str, Handler]] = {
    _CHAT_PATH: ("POST", chat),
    "/v1/completions": ("POST", completions),
    "/v1/embeddings": ("POST", embeddings),
    "/v1/responses": ("POST", responses),
    "/v1/models": ("GET", list_models),
}
_MODEL_PREFIX = "/v1/models/"
_AZURE_PREFIX = "/openai/deployments/"
_AZURE_OPERATIONS: dict[str, Handler] = {
    "chat/completions": chat,
    "completions": completions,
    "embeddings": embeddings,
}
_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _route(method: str, path: str) -> tuple[Handler, str | None]:
    """The endpoint for a request and the target its path names (deployment or model id)."""
    target = None
    found = _ROUTES.get(path)
    if found is None and path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
        found, target = ("GET", get_model), path.removeprefix(_MODEL_PREFIX)
    elif found is None and path.startswith(_AZURE_PREFIX):
        deployment, _, operation = path.removeprefix(_AZURE_PREFIX).partition("/")
        handler = _AZURE_OPERATIONS.get(operation)
        if deployment and handler is not None:
            found, target = ("POST", handler), deployment
    if found is None:
        raise SimulatorError(404, f"Invalid URL ({method} {path})")
    allowed, handler = found
    if method != allowed:
        raise SimulatorError(405, f"Invalid method for URL ({method} {path})")
    return handler, target


def _header_overrides(faults: Faults, headers: list[tuple[bytes, bytes]]) -> Faults:
    overrides = {
        name.removeprefix(HEADER_PREFIX).decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name.startswith(HEADER_PREFIX)
    }
    if not overrides:
        return faults
    try:
        return faults_from_headers(faults, overrides)
    except msgspec.ValidationError as exc:
        raise SimulatorError(400, f"Invalid x-sim-* header: {exc}") from None


def _injected(faults: Faults, status: int) -> SimulatorError:
    headers = []
    if faults.retry_after is not None:
        headers.append((b"retry-after", f"{faults.retry_after:g}".encode()))
    if status == 429:
        return SimulatorError(
            429, "Rate limit reached (simulated).", code="rate_limit_exceeded", headers=headers
        )
    return SimulatorError(status, f"Simulated upstream error (HTTP {status}).", headers=headers)


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the common case: the whole body in one message
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class SimulatorApp:
    """The simulated OpenAI upstream as an ASGI 3 application; its state lives on `.state`."""

    def __init__(self, config: SimulatorConfig) -> None:
        """Build the app and its fresh state."""
        self.config = config
        self.state = SimulatorState(config)
        self._canned = CannedChat(config.faults) if config.canned else None
        key = config.api_key
        self._credentials = (
            None
            if key is None
            else {b"authorization": b"Bearer " + key.encode(), b"api-key": key.encode()}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: HTTP and lifespan; anything else is refused."""
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        else:
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        method: str = scope["method"]
        path: str = scope["path"]
        if self._canned is not None and path == _CHAT_PATH and method == "POST":
            await self._canned.answer(body, send)
            return
        if path.startswith(CONTROL_PREFIX):
            await handle_control(self.state, method, path, body, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        self.state.count_request(path)
        self.state.log_request(method, path, scope["query_string"], headers, body)
        exchange = Exchange(receive, send, self.state, self.state.take_faults(), body)
        try:
            exchange.faults = faults = _header_overrides(exchange.faults, headers)
            if faults.delay_ms and not await exchange.pause(faults.delay_ms):
                return  # the client left while we were waiting: nobody to answer
            self._authenticate(headers)
            if faults.status is not None:
                raise _injected(faults, faults.status)
            handler, target = _route(method, path)
            await handler(exchange, target)
        except SimulatorError as error:
            await exchange.error(error)
        finally:
            exchange.close()

    def _authenticate(self, headers: list[tuple[bytes, bytes]]) -> None:
        expected = self._credentials
        if expected is None:
            return
        offered = [(name, value) for name, value in headers if name in expected]
        if any(hmac.compare_digest(value, expected[name]) for name, value in offered):
            return
        if not offered:
            raise SimulatorError(401, _MISSING_KEY)
        raise SimulatorError(401, "Incorrect API key provided.", code="invalid_api_key")


def create_app(config: SimulatorConfig | None = None) -> SimulatorApp:
    """A simulator ASGI app with `config` (defaults: `SimulatorConfig()`)."""
    return SimulatorApp(config if config is not None else SimulatorConfig())
