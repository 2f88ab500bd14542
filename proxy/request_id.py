"""Every response carries an ``x-request-id``: the proxied call's own, else a fresh one.

Proxied responses set it themselves (it is the id their usage events derive from); this hook
gives one to everything else too (``/v1/usage``, models, health, errors, unknown routes), as
OpenAI does on each of its responses.
"""

from __future__ import annotations

from typing import Any

from litestar.types import Message, Scope

from proxy.ids import new_request_id

__all__ = ["ensure_request_id", "request_id_of"]

_HEADER = b"x-request-id"
#: Where a request's id lives once something asked for it (the ASGI scope's ``state``).
_STATE_KEY = "tallygate_request_id"


def request_id_of(scope: Scope) -> str:
    """The request's id, made now if it has none yet; its response carries the same one.

    For routes that name their request before answering (the Lago event routes tag their
    batches with it, and a batch the store cannot take is logged under it).
    """
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get(_STATE_KEY)
    if not isinstance(request_id, str):
        request_id = state[_STATE_KEY] = new_request_id()
    return request_id


async def ensure_request_id(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook: add ``x-request-id`` to a response that lacks one."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or ())
    if any(name.lower() == _HEADER for name, _ in headers):
        return
    headers.append((_HEADER, request_id_of(scope).encode()))
    message["headers"] = headers
