"""The one table that maps error categories to HTTP status codes and envelopes.

``/api/v1/*`` (the Lago-compatible admin API) answers in Lago's envelope; everything else in
OpenAI's ``{"error": {message, type, param, code}}``. Handlers and routes raise categories
(:class:`GatewayError`, :mod:`metering.errors`); only this module knows about status codes.

Every 5xx is logged here, once, with the request id its response carries
(:func:`log_server_error`; the proxied endpoints call it for theirs): a category as one line,
anything else (a bug) with its traceback. Only the method, path, status and the client-safe
message are logged, never a header or a body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from metering.errors import (
    Conflict,
    MeteringError,
    NotAllowed,
    NotFound,
    RecordRefused,
    StoreBroken,
    StoreUnavailable,
    ValidationFailed,
)
from proxy.request_id import request_id_of

__all__ = [
    "LAGO_PREFIX",
    "GatewayError",
    "error_document",
    "exception_handlers",
    "internal_error",
    "log_server_error",
    "openai_error",
]

log = logging.getLogger("tallygate")

LAGO_PREFIX = "/api/v1"
#: Seconds a client should wait before retrying when the store sheds load.
RETRY_AFTER_SECONDS = 1
#: ...and when the store is broken (damaged, deleted or replaced file) until an operator acts.
BROKEN_RETRY_AFTER_SECONDS = 30


class GatewayError(Exception):
    """An error the gateway itself decides (auth, routing, body limits, upstream failures).

    ``kind`` is one of :data:`_GATEWAY_STATUS`'s keys; ``message`` is safe to show a client
    (it never contains a key or an upstream URL with credentials).
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        super().__init__(message)


# kind -> (HTTP status, OpenAI error "type")
_GATEWAY_STATUS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "unauthorized": (401, "invalid_request_error"),
    "forbidden": (403, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "request_timeout": (408, "invalid_request_error"),
    "too_large": (413, "invalid_request_error"),
    "uri_too_long": (414, "invalid_request_error"),
    "headers_too_large": (431, "invalid_request_error"),
    "unsupported_media_type": (415, "invalid_request_error"),
    "upstream_unavailable": (502, "upstream_error"),
    "upstream_timeout": (504, "upstream_error"),
    "upstream_not_configured": (503, "upstream_error"),
    "overloaded": (503, "server_error"),
    "internal": (500, "server_error"),
}


def _openai_body(message: str, type_: str, code: str | None, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _lago_body(status: int, code: str | None = None, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "error": HTTPStatus(status).phrase}
    if code is not None:
        body["code"] = code
    if details is not None:
        body["error_details"] = details
    return body


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response[bytes]:
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _is_lago(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(LAGO_PREFIX)


def _handle_gateway(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    return _json(*error_document(exc, request.url.path))


def error_document(exc: GatewayError, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, envelope and headers of a gateway error answering a request for ``path``:
    Lago's envelope under ``/api/v1``, OpenAI's elsewhere.

    The server protocol renders its own refusals (431, 414, 408: before any app has seen the
    request) from this too.
    """
    if not path.startswith(LAGO_PREFIX):
        return openai_error(exc)
    status, _ = _GATEWAY_STATUS[exc.kind]
    if status == 400:
        return status, {"status": 400, "error": exc.message}, exc.headers
    return status, _lago_body(status, exc.code), exc.headers


def openai_error(exc: GatewayError | MeteringError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, OpenAI error envelope and headers of an error on the OpenAI surface.

    The proxied endpoints (served in front of Litestar, :mod:`proxy.hot_path`) render their
    errors from this too, so both ways in answer alike.
    """
    if isinstance(exc, GatewayError):
        status, type_ = _GATEWAY_STATUS[exc.kind]
        return status, _openai_body(exc.message, type_, exc.code, exc.param), exc.headers
    status, code, _, message, headers = _metering_error(exc)
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return status, _openai_body(message, type_, code, None), headers


def _metering_error(exc: MeteringError) -> tuple[int, str, Any, str, dict[str, str]]:
    """Status, code, details, message and headers of a metering error category."""
    headers: dict[str, str] = {}
    if isinstance(exc, NotFound):
        status, code, details, message = 404, exc.code, None, f"{exc.resource} not found"
    elif isinstance(exc, ValidationFailed | Conflict):
        status, code, details = 422, "validation_errors", dict(exc.issues)
        message = f"validation failed: {msgspec.json.encode(details).decode()}"
    elif isinstance(exc, RecordRefused):
        # The store cannot hold one of the values; the batch was refused, nothing of it stored.
        status, code, details = 422, "validation_errors", {"event": ["value_not_storable"]}
        message = "the usage store cannot hold a value of this event"
    elif isinstance(exc, NotAllowed):
        status, code, details, message = 405, exc.code, None, exc.code
    elif isinstance(exc, StoreBroken):
        # The operator has to act (the log says what to do): no point retrying soon.
        status, code, details = 503, "store_unavailable", None
        message = "usage store is out of service until an operator repairs it; retry later"
        headers["Retry-After"] = str(BROKEN_RETRY_AFTER_SECONDS)
    elif isinstance(exc, StoreUnavailable):
        status, code, details = 503, "store_unavailable", None
        message = "usage store is not accepting writes right now; retry shortly"
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    else:  # a category added to the core without a row here is a bug: surface it as 500
        status, code, details, message = 500, "internal_error", None, "internal error"
    return status, code, details, message, headers


def _handle_metering(request: Request[Any, Any, Any], exc: MeteringError) -> Response[bytes]:
    if _is_lago(request):
        status, code, details, _, headers = _metering_error(exc)
        return _json(status, _lago_body(status, code, details), headers)
    return _json(*openai_error(exc))


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if _is_lago(request):
        if isinstance(exc, ValidationException) and status == 400:
            return _json(400, {"status": 400, "error": f"BadRequest: {exc.detail}"}, headers)
        return _json(status, _lago_body(status), headers)
    phrase = HTTPStatus(status).phrase
    message = exc.detail if exc.detail and exc.detail != phrase else phrase
    if status == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}"
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return _json(status, _openai_body(message, type_, None, None), headers)


def internal_error() -> GatewayError:
    """The client's side of a bug: a 500 that says nothing of what failed."""
    return GatewayError(
        "internal", "The gateway failed to handle the request.", code="internal_error"
    )


def _handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # A bug in a route: a 500 in the route's envelope (Litestar's own is neither), logged
    # with its traceback by _logging_5xx.
    return _handle_gateway(request, internal_error())


def log_server_error(
    status: int, method: str, path: str, request_id: str, exc: BaseException | None
) -> None:
    """Log one 5xx answer with its request id: a category (or the upstream's own 5xx, with
    ``exc`` None) as one line, anything else with its traceback."""
    if exc is None:
        log.warning("%d (the upstream's) for %s %s, request %s", status, method, path, request_id)
    elif isinstance(exc, GatewayError | HTTPException) or (
        isinstance(exc, MeteringError) and _metering_error(exc)[0] != 500
    ):
        reason = exc.detail if isinstance(exc, HTTPException) else str(exc)
        log.warning(
            "%d for %s %s, request %s: %s: %s",
            status,
            method,
            path,
            request_id,
            type(exc).__name__,
            reason,
        )
    else:
        log.error(
            "%d for %s %s, request %s: unexpected error",
            status,
            method,
            path,
            request_id,
            exc_info=exc,
        )


_Handler = Callable[[Request[Any, Any, Any], Any], Response[bytes]]


def _logging_5xx(handler: _Handler) -> _Handler:
    """``handler``, and a 5xx it renders gets its request id now, so that the log line and
    the response carry the same one."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        response = handler(request, exc)
        status = response.status_code or 200  # always set by _json
        if status >= 500:
            # The id the request already has, if a route asked for it (and logged under it).
            request_id = request_id_of(request.scope)
            response.headers["x-request-id"] = request_id
            log_server_error(status, request.method, request.url.path, request_id, exc)
        return response

    return handle


def exception_handlers() -> ExceptionHandlersMap:
    """The handlers to register on the app: every error response is rendered here."""
    return {
        GatewayError: _logging_5xx(_handle_gateway),
        MeteringError: _logging_5xx(_handle_metering),
        HTTPException: _logging_5xx(_handle_http),
        # The app's outer boundary: what no category covers is a bug, answered and logged.
        Exception: _logging_5xx(_handle_unexpected),
    }
