"""The admin API's OpenAPI description: what the handlers read by hand, documented.

The Lago routes read their bodies and query strings themselves (to answer in Lago's envelope
with every issue listed), so Litestar cannot infer them. This module adds, to the generated
schema, each route's request body (Lago's root key around the resource), its query parameters,
the admin key's Bearer scheme, and the error answers in Lago's envelope. Tools such as
schemathesis test the API against this description.
"""

from __future__ import annotations

from typing import Any

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from metering.event_limits import MAX_TEXT
from proxy.errors import LAGO_PREFIX

__all__ = ["document_admin_api"]

_SCHEME = "admin_key"
_STRING = Schema(type=OpenAPIType.STRING)
_ANY_OBJECT = Schema(type=OpenAPIType.OBJECT)

_ERROR_FIELDS: dict[str, Schema | Reference] = {
    "status": Schema(type=OpenAPIType.INTEGER),
    "error": _STRING,
    "code": _STRING,
    "error_details": Schema(one_of=[_ANY_OBJECT, Schema(type=OpenAPIType.ARRAY)]),
}
_LAGO_ERROR = Schema(
    type=OpenAPIType.OBJECT, required=["status", "error"], properties=_ERROR_FIELDS
)
_ERRORS = {
    "400": "Malformed body or parameter (Lago's BadRequest)",
    "401": "Missing or wrong admin key",
    "404": "No such resource",
    "405": "Not allowed in the resource's state",
    "422": "Validation failed: every issue listed in error_details",
    "503": "The usage store is not accepting writes; retry after Retry-After",
}


def _object(required: list[str], **properties: Schema | Reference) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, required=required, properties=properties)


def _array(items: Schema) -> Schema:
    return Schema(type=OpenAPIType.ARRAY, items=items)


_FILTER = _object(["key", "values"], key=_STRING, values=_array(_STRING))
_METRIC = _object(
    ["name", "code", "aggregation_type"],
    name=_STRING,
    code=_STRING,
    description=_STRING,
    aggregation_type=Schema(
        type=OpenAPIType.STRING,
        enum=[
            "count_agg",
            "sum_agg",
            "max_agg",
            "unique_count_agg",
            "latest_agg",
            "weighted_sum_agg",
        ],
    ),
    field_name=_STRING,
    recurring=Schema(type=OpenAPIType.BOOLEAN),
    weighted_interval=_STRING,
    filters=_array(_FILTER),
)
_CHARGE = _object(
    ["billable_metric_id", "charge_model"],
    billable_metric_id=_STRING,
    charge_model=_STRING,
    invoiceable=Schema(type=OpenAPIType.BOOLEAN),
    pay_in_advance=Schema(type=OpenAPIType.BOOLEAN),
    properties=_ANY_OBJECT,
    filters=_array(_ANY_OBJECT),
)
_PLAN = _object(
    ["name", "code", "interval", "amount_cents", "amount_currency"],
    name=_STRING,
    code=_STRING,
    description=_STRING,
    interval=Schema(
        type=OpenAPIType.STRING,
        enum=["weekly", "monthly", "quarterly", "semiannual", "yearly"],
    ),
    amount_cents=Schema(type=OpenAPIType.INTEGER),
    amount_currency=_STRING,
    pay_in_advance=Schema(type=OpenAPIType.BOOLEAN),
    charges=_array(_CHARGE),
)
_CUSTOMER = _object(
    ["external_id"],
    external_id=_STRING,
    name=_STRING,
    email=_STRING,
    currency=_STRING,
    timezone=_STRING,
)
_SUBSCRIPTION = _object(
    ["external_customer_id", "plan_code", "external_id"],
    external_customer_id=_STRING,
    plan_code=_STRING,
    external_id=_STRING,
    name=_STRING,
    subscription_at=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    billing_time=Schema(type=OpenAPIType.STRING, enum=["calendar", "anniversary"]),
)
# What a store can hold (metering.event_limits): ids of at most MAX_TEXT characters.
_EVENT_ID = Schema(type=OpenAPIType.STRING, max_length=MAX_TEXT)
_EVENT = _object(
    ["transaction_id", "external_subscription_id", "code"],
    transaction_id=_EVENT_ID,
    external_subscription_id=_EVENT_ID,
    code=_EVENT_ID,
    timestamp=Schema(one_of=[Schema(type=OpenAPIType.INTEGER), _STRING]),
    properties=_ANY_OBJECT,
)

# (method, path under /api/v1) -> the body's root key and what it wraps
_BODIES: dict[tuple[str, str], tuple[str, Schema]] = {
    ("post", "/billable_metrics"): ("billable_metric", _METRIC),
    ("put", "/billable_metrics/{code}"): ("billable_metric", _METRIC),
    ("post", "/plans"): ("plan", _PLAN),
    ("put", "/plans/{code}"): ("plan", _PLAN),
    ("post", "/customers"): ("customer", _CUSTOMER),
    ("post", "/subscriptions"): ("subscription", _SUBSCRIPTION),
    ("post", "/events"): ("event", _EVENT),
    ("post", "/events/batch"): ("events", _array(_EVENT)),
}
_PAGE = [
    Parameter(name="page", param_in="query", schema=Schema(type=OpenAPIType.INTEGER)),
    Parameter(name="per_page", param_in="query", schema=Schema(type=OpenAPIType.INTEGER)),
]
_QUERIES: dict[tuple[str, str], list[str]] = {
    ("get", "/subscriptions"): ["external_customer_id", "plan_code", "status"],
    ("get", "/subscriptions/{external_id}"): ["status"],
    ("get", "/events/{transaction_id}"): ["external_subscription_id"],
    ("get", "/customers/{external_customer_id}/current_usage"): ["external_subscription_id"],
}
_LISTS = {"/billable_metrics", "/plans", "/customers", "/subscriptions"}


def _document(method: str, path: str, operation: Operation) -> None:
    operation.security = [{_SCHEME: []}]
    responses = dict(operation.responses or {})
    # The handlers return encoded bytes, which Litestar documents as a string.
    responses["200"] = OpenAPIResponse(
        description="The resource (or list) under Lago's root key",
        content={"application/json": OpenAPIMediaType(schema=_ANY_OBJECT)},
    )
    for status, description in _ERRORS.items():
        responses.setdefault(
            status,
            OpenAPIResponse(
                description=description,
                content={"application/json": OpenAPIMediaType(schema=_LAGO_ERROR)},
            ),
        )
    operation.responses = responses
    body = _BODIES.get((method, path))
    if body is not None:
        root, schema = body
        wrapped = _object([root], **{root: schema})
        operation.request_body = RequestBody(
            required=True, content={"application/json": OpenAPIMediaType(schema=wrapped)}
        )
    parameters: list[Any] = list(operation.parameters or [])
    if method == "get" and path in _LISTS:
        parameters.extend(_PAGE)
    parameters.extend(
        Parameter(name=name, param_in="query", schema=_STRING)
        for name in _QUERIES.get((method, path), [])
    )
    operation.parameters = parameters or None


def document_admin_api(schema: OpenAPI) -> None:
    """Complete the generated schema's ``/api/v1`` operations in place (see module docstring)."""
    components = schema.components if isinstance(schema.components, Components) else Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        _SCHEME: SecurityScheme(type="http", scheme="bearer", description="The admin key"),
    }
    schema.components = components
    for path, item in (schema.paths or {}).items():
        if not path.startswith(f"{LAGO_PREFIX}/"):
            continue
        relative = path.removeprefix(LAGO_PREFIX)
        for method in ("get", "post", "put", "delete"):
            operation = getattr(item, method, None)
            if isinstance(operation, Operation):
                _document(method, relative, operation)
