"""OpenAI-shaped errors of the simulator: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import msgspec

__all__ = ["SimulatorError", "decode_request", "error_type"]

_T = TypeVar("_T")

# OpenAI's own wording for a body that is not JSON, so clients see the familiar message.
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def error_type(status: int) -> str:
    """The OpenAI error `type` that usually accompanies an HTTP status."""
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class SimulatorError(Exception):
    """An error answer: raised anywhere in a handler, rendered once by the app."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Describe the answer; the error `type` follows from the status."""
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = tuple(headers)

    def body(self) -> bytes:
        """The JSON error envelope."""
        error = {
            "message": self.message,
            "type": error_type(self.status),
            "param": self.param,
            "code": self.code,
        }
        return msgspec.json.encode({"error": error})


def decode_request(body: bytes, kind: type[_T]) -> _T:
    """Decode a request body into `kind`, turning msgspec's complaints into OpenAI-style 400s."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:  # subclass of DecodeError: must come first
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError:
        raise SimulatorError(400, _BAD_JSON) from None


def _invalid(detail: str) -> SimulatorError:
    missing = _MISSING_FIELD.search(detail)
    if missing is not None:
        name = missing.group(1)
        return SimulatorError(
            400,
            f"Missing required parameter: '{name}'.",
            param=name,
            code="missing_required_parameter",
        )
    at = _AT_PATH.search(detail)
    param = at.group(1) if at is not None and at.group(1) else None
    return SimulatorError(400, f"Invalid request: {detail}", param=param, code="invalid_value")
