"""Reading charge properties into numbers, shared by the charge models and their validation.

Properties arrive as decoded JSON: amounts are strings (``"0.03"``), range bounds and counts are
JSON numbers. Validation (:mod:`.validation`) rejects anything else on save; the readers here
are lenient so that pricing stored data never raises (a value that cannot be read prices as 0,
where Lago would fail the whole usage request).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["is_number", "parse_decimal", "read_decimal", "read_int", "read_optional_decimal"]

_LEADING_INT = re.compile(r"\s*[-+]?\d+")


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (booleans are not)."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def parse_decimal(value: Any) -> Decimal | None:
    """``value`` as a finite Decimal if it is a number or a numeric string, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
    elif isinstance(value, int | Decimal):
        parsed = Decimal(value)
    elif isinstance(value, float):
        # The float's shortest repr, as Ruby's BigDecimal(value.to_s) reads it.
        parsed = Decimal(repr(value))
    else:
        return None
    return parsed if parsed.is_finite() else None


def read_decimal(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    """A property as a Decimal; absent or unreadable -> ``default``."""
    parsed = parse_decimal(value)
    return default if parsed is None else parsed


def read_optional_decimal(value: Any) -> Decimal | None:
    """A property as a Decimal, ``None`` when absent or blank (Ruby's ``present?``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_decimal(value)


def read_int(value: Any) -> int:
    """A property the way Ruby's ``to_i`` reads it: ``nil`` -> 0, ``"3"`` -> 3, ``3.7`` -> 3."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return int(value) if Decimal(value).is_finite() else 0
    if isinstance(value, str):
        match = _LEADING_INT.match(value)
        return int(match.group()) if match else 0
    return 0
