"""The OpenAI surface's OpenAPI description: the proxied POSTs, which Litestar never sees.

The four proxied endpoints (:data:`proxy.surfaces.SURFACES`) are served in front of Litestar
(:mod:`proxy.hot_path`), so the generated schema lacks them. This module adds each one by hand:
the request body as far as the gateway reads it (``model``, and ``stream``/``stream_options``
where the surface streams; every other field is forwarded as sent), the virtual key's Bearer
scheme, and the answers the gateway gives, errors in OpenAI's envelope. The key-authenticated
``GET /v1/...`` routes Litestar does document get the same scheme and their 401.
"""

from __future__ import annotations

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from proxy.surfaces import SURFACES, Surface

__all__ = ["document_openai_api"]

_SCHEME = "api_key"
_STRING = Schema(type=OpenAPIType.STRING)
_NULLABLE_STRING = Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL])
_OBJECT = Schema(type=OpenAPIType.OBJECT)

_ERROR = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type", "param", "code"],
            properties={
                "message": _STRING,
                "type": _STRING,
                "param": _NULLABLE_STRING,
                "code": _NULLABLE_STRING,
            },
        )
    },
)
# Every answer carries one, the gateway's own errors included (proxy.hot_path, proxy.errors).
_REQUEST_ID = OpenAPIHeader(
    schema=_STRING, required=True, description="tallygate's id of this request"
)
_RETRY_AFTER = OpenAPIHeader(schema=_STRING, description="Seconds to wait before retrying")

#: status -> what answers it on a proxied endpoint (proxy.errors' table, the routing and
#: upstream code). An upstream's own error answer is passed through with its status.
_ERRORS = {
    "400": "Body not JSON, not an object, without `model`, a read field of the wrong type, "
    "`stream` on a surface that does not stream; or the upstream's own 400",
    "401": "Missing, unknown or revoked virtual key (nothing is forwarded)",
    "404": "`model_not_found`: the model is not served here; or the upstream's own 404",
    "413": "The body is larger than `server.max_body_bytes`",
    "415": "The body is declared as something other than JSON",
    "429": "The upstream's rate limit, passed through with its `retry-after` and "
    "`x-ratelimit-*` headers",
    "502": "`upstream_unavailable` (unreachable), `upstream_auth_failed` (the gateway's "
    "upstream key was refused), `upstream_invalid_response`; or the upstream's 502 after retries",
    "503": "`upstream_not_configured` (its key variable is unset), `store_unavailable` (the "
    "usage store sheds load: retry after `Retry-After`); or the upstream's 503 after retries",
    "504": "`upstream_timeout`; or the upstream's 504 after retries",
    "default": "Any other error the upstream answered, passed through with its status",
}


def _error(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description,
        headers={"x-request-id": _REQUEST_ID, "retry-after": _RETRY_AFTER},
        content={"application/json": OpenAPIMediaType(schema=_ERROR)},
    )


def _body(surface: Surface) -> Schema:
    """What the gateway reads of the body (``proxy.request_head``); the rest goes upstream."""
    properties: dict[str, Schema | Reference] = {"model": Schema(type=OpenAPIType.STRING)}
    if surface.streams:
        properties["stream"] = Schema(
            type=[OpenAPIType.BOOLEAN, OpenAPIType.NULL],
            description="Answer with server-sent events",
        )
        properties["stream_options"] = Schema(
            type=[OpenAPIType.OBJECT, OpenAPIType.NULL],
            properties={"include_usage": Schema(type=[OpenAPIType.BOOLEAN, OpenAPIType.NULL])},
            description="The gateway asks the upstream for usage itself; the usage chunk "
            "reaches the client only if it set `include_usage`",
        )
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["model"],
        properties=properties,
        description="OpenAI's request body; fields the gateway does not read are forwarded as sent",
    )


def _operation(surface: Surface) -> Operation:
    success = {"application/json": OpenAPIMediaType(schema=_OBJECT)}
    if surface.streams:
        success["text/event-stream"] = OpenAPIMediaType()
    responses: dict[str, OpenAPIResponse | Reference] = {
        "200": OpenAPIResponse(
            description="The upstream's answer, passed through (events when `stream` is true)",
            headers={"x-request-id": _REQUEST_ID},
            content=success,
        )
    }
    responses.update((status, _error(text)) for status, text in _ERRORS.items())
    return Operation(
        operation_id="".join(part.title() for part in f"v1/{surface.endpoint}".split("/")),
        summary=f"Proxied: POST /v1/{surface.endpoint}",
        description="Forwarded to the model's upstream; the tokens used are metered.",
        request_body=RequestBody(
            required=True, content={"application/json": OpenAPIMediaType(schema=_body(surface))}
        ),
        responses=responses,
        security=[{_SCHEME: []}],
    )


def document_openai_api(schema: OpenAPI) -> None:
    """Add the proxied endpoints and the virtual key's scheme to the schema, in place."""
    components = schema.components if isinstance(schema.components, Components) else Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        _SCHEME: SecurityScheme(type="http", scheme="bearer", description="A virtual key (tg-...)"),
    }
    schema.components = components
    paths = dict(schema.paths or {})
    for path, item in paths.items():
        if path.startswith("/v1/") and isinstance(item.get, Operation):
            # The model listing and /v1/usage authenticate like the proxied endpoints.
            item.get.security = [{_SCHEME: []}]
            responses = {**(item.get.responses or {}), "401": _error(_ERRORS["401"])}
            if "400" in responses:  # rendered in OpenAI's envelope too (proxy.errors)
                responses["400"] = _error("Malformed request")
            if path == "/v1/models/{model_id}":
                responses["404"] = _error("`model_not_found`: the model is not served here")
            item.get.responses = responses
    for surface in SURFACES:
        paths[f"/v1/{surface.endpoint}"] = PathItem(post=_operation(surface))
    schema.paths = paths
