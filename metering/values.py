"""How event property values are read: Lago's text rendering and its numeric rule.

Lago's Postgres store compares property values as the text ``->>`` yields and only aggregates
values whose text matches ``^-?\\d+(\\.\\d+)?$`` (reference/lago-semantics.md section 1).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

__all__ = ["numeric_value", "property_text"]

_NUMERIC = re.compile(r"-?\d+(\.\d+)?")


def property_text(value: Any) -> str | None:
    """Render a JSON property value as Postgres ``->>`` does; ``None`` for JSON null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Decoders should hand numbers over as Decimal (msgspec's float_hook) to keep their
        # text; a float is rendered through its shortest round-tripping repr, without exponent.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, separators=(", ", ": "))


def numeric_value(value: Any) -> Decimal | None:
    """The value as a Decimal if Lago would aggregate it, else ``None`` (skipped everywhere)."""
    text = property_text(value)
    if text is None or _NUMERIC.fullmatch(text) is None:
        return None
    return Decimal(text)
