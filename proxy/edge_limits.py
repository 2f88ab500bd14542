"""What one connection may make the gateway hold, and for how long, before any app sees it.

Everything a client sends before its request is authenticated is bounded here: the bytes of
a request's line and headers, how many headers, the length of the request target, and the
time it may take to send the head and then the body (``[server]`` settings, documented in
:class:`config.ServerSettings`). :mod:`proxy.http_protocol` enforces them where the bytes
arrive; :func:`refusal` is the answer it writes when one is exceeded.
"""

from __future__ import annotations

import http
from dataclasses import dataclass

import msgspec

from config import ServerSettings
from proxy.errors import GatewayError, error_document
from proxy.ids import new_request_id

__all__ = ["EdgeLimits", "refusal"]


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The connection limits of :class:`config.ServerSettings` (the same defaults)."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_request_line_bytes: int = 8 * 1024
    header_timeout_seconds: float = 20.0
    body_timeout_seconds: float = 60.0
    keep_alive_seconds: float = 5.0

    @classmethod
    def from_settings(cls, server: ServerSettings) -> EdgeLimits:
        """The limits the ``[server]`` settings set."""
        return cls(
            max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
            max_request_line_bytes=server.max_request_line_bytes,
            header_timeout_seconds=server.header_timeout_seconds,
            body_timeout_seconds=server.body_timeout_seconds,
            keep_alive_seconds=server.keep_alive_seconds,
        )


def refusal(error: GatewayError, path: bytes, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer for ``error``, closing the connection.

    ``path`` is the request target as far as it arrived (it picks Lago's envelope under
    ``/api/v1``, OpenAI's elsewhere); ``default_headers`` are the server's (``date``).
    """
    status, document, _ = error_document(error, path.decode("latin-1"))
    body = msgspec.json.encode(document)
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
    lines.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: %b\r\n"
        b"connection: close\r\n\r\n" % (len(body), new_request_id().encode())
    )
    return b"".join(lines) + body
