"""Every response carries an ``x-request-id``: the proxied call's own, else a fresh one.

Proxied responses set it themselves (it is the id their usage events derive from); this hook
gives one to everything else too (``/v1/usage``, models, health, errors, unknown routes), as
OpenAI does on each of its responses.
"""

from __future__ import annotations

from litestar.types import Message, Scope

from proxy.ids import new_request_id

__all__ = ["ensure_request_id"]

_HEADER = b"x-request-id"


async def ensure_request_id(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook: add ``x-request-id`` to a response that lacks one."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or ())
    if any(name.lower() == _HEADER for name, _ in headers):
        return
    headers.append((_HEADER, new_request_id().encode()))
    message["headers"] = headers
