"""The few fields of an OpenAI request body the gateway needs (design.md section 3, step 2).

Only ``model``, ``stream``, ``stream_options`` and ``n`` are read with a narrow msgspec Struct;
the client's original bytes are what goes upstream unless a field must change.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.errors import GatewayError

__all__ = ["RequestHead", "parse_head", "replace_fields", "require_json", "with_stream_usage"]


class StreamOptions(msgspec.Struct, kw_only=True):
    """``stream_options``; other keys (e.g. ``include_obfuscation``) are kept in the raw body."""

    include_usage: bool | None = None


class RequestHead(msgspec.Struct, kw_only=True):
    """The routing and metering fields of a request body."""

    model: str
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = None


_DECODER = msgspec.json.Decoder(RequestHead)


def parse_head(body: bytes) -> RequestHead:
    """Read the head of a body; a clear 400 in OpenAI's words for anything malformed."""
    try:
        head = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "missing required field `model`" in message:
            raise GatewayError(
                "invalid_request",
                "you must provide a model parameter",
                code="missing_required_parameter",
                param="model",
            ) from None
        param = message.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in message else None
        raise GatewayError(
            "invalid_request", f"Invalid request body: {message}", code="invalid_type", param=param
        ) from None
    except msgspec.DecodeError:
        raise GatewayError(
            "invalid_request",
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
            code="invalid_json",
        ) from None
    except RecursionError:  # msgspec's bound on nesting, even for the fields it skips
        raise GatewayError(
            "invalid_request",
            "The JSON body of your request is nested too deeply.",
            code="invalid_json",
        ) from None
    if not head.model:
        raise GatewayError(
            "invalid_request",
            "you must provide a model parameter",
            code="missing_required_parameter",
            param="model",
        )
    return head


def require_json(content_type: str | None) -> None:
    """415 for a body declared as anything but JSON (an undeclared body is read as JSON)."""
    if not content_type:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return
    raise GatewayError(
        "unsupported_media_type",
        f"Unsupported Content-Type '{media[:64]}': send the request body as application/json.",
        code="unsupported_media_type",
    )


def replace_fields(body: bytes, **fields: Any) -> bytes:
    """The body with some top-level fields set (alias rewrite, injected stream options).

    :func:`parse_head` skips the fields it does not read, so a value msgspec cannot hold
    (a number beyond a double, ``1e400``) first shows up here: a 400, like any bad body.
    """
    document = _document(body)
    document.update(fields)
    return msgspec.json.encode(document)


def with_stream_usage(body: bytes) -> bytes:
    """The body with ``stream_options.include_usage`` set, its other options kept.

    A body without ``stream_options`` (most) gets the field appended to its bytes: decoding and
    re-encoding a whole conversation per stream costs more than the rest of the request.
    """
    if b'"stream_options"' not in body:
        # parse_head decoded it as a JSON object: it ends with "}" (and maybe whitespace).
        inner = body.rstrip()[:-1].rstrip()
        comma = b"" if inner.endswith(b"{") else b","
        return inner + comma + b'"stream_options":{"include_usage":true}}'
    document = _document(body)
    options = document.get("stream_options")
    merged = {**options} if isinstance(options, dict) else {}
    merged["include_usage"] = True  # other keys (include_obfuscation...) are kept
    document["stream_options"] = merged
    return msgspec.json.encode(document)


def _document(body: bytes) -> dict[str, Any]:
    try:
        document: dict[str, Any] = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise GatewayError(
            "invalid_request", f"Invalid request body: {exc}", code="invalid_value"
        ) from None
    except RecursionError:  # parse_head passed it, a few frames higher up the stack
        raise GatewayError(
            "invalid_request", "Invalid request body: nested too deeply", code="invalid_value"
        ) from None
    return document
