"""How event property values are read: Lago's text rendering, its numeric rule, and the domain.

Lago's Postgres store compares property values as the text ``->>`` yields and only aggregates
values whose text matches ``^-?\\d+(\\.\\d+)?$`` (reference/lago-semantics.md section 1).

The numeric domain: a metered value is a decimal with at most :data:`MAX_DIGITS` digits before
the point and at most :data:`MAX_PLACES` after it (what PostgreSQL ``numeric(40, 20)`` holds).
Ingestion refuses numbers outside it (``metering.event_limits``). So that a value stored by an
older version can never break a read or a fold, a value outside the domain does not qualify as
numeric here: it is skipped from sums and maxima like any non-numeric value (the event still
counts as an event). Sums of up to 2**63 values stay below 10**39 with at most 20 places, which
both stores hold exactly, and a charge (units x price) stays exact in the billing context of
``metering.rounding`` (100 digits) for prices of up to 40 significant digits.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_DIGITS",
    "MAX_PLACES",
    "SUM_LIMIT",
    "VALUE_LIMIT",
    "in_domain",
    "json_int",
    "numeric_value",
    "property_text",
]

#: Digits a metered value may have before its decimal point: ``abs(value) < 10**20``.
MAX_DIGITS = 20
#: Digits a metered value may have after its decimal point (trailing zeros count).
MAX_PLACES = 20
#: Every metered value is smaller than this in magnitude.
VALUE_LIMIT = 10**MAX_DIGITS
#: Every sum of metered values a store keeps (at most 2**63 of them) is smaller than this.
SUM_LIMIT = 10 ** (MAX_DIGITS + 20)

_NUMERIC = re.compile(r"-?\d+(\.\d+)?")
# Beyond this many digits a number's positional text is not worth building (10**999999999
# would take a gigabyte): such a value is outside every domain and renders in E notation.
_RENDER_DIGITS = 1000


def in_domain(value: int | Decimal) -> bool:
    """Whether ``value`` is a finite decimal of the metered domain (see the module docstring)."""
    if type(value) is int:
        return bool(-VALUE_LIMIT < value < VALUE_LIMIT)
    if not isinstance(value, Decimal) or not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    # adjusted() is the exponent of the leading digit: 10**19 has 19, 10**20 has 20.
    return exponent >= -MAX_PLACES and (not value or value.adjusted() < MAX_DIGITS)


def json_int(text: str) -> int | Decimal:
    """A JSON integer's value for ``json.loads(parse_int=...)``: an int, or a Decimal past
    the 4,300 digits Python refuses to read as an int (such a number is outside the domain)."""
    return int(text) if len(text) < 4000 else Decimal(text)


def _decimal_text(value: Decimal) -> str:
    if value.is_finite() and -_RENDER_DIGITS < value.adjusted() < _RENDER_DIGITS:
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent > -_RENDER_DIGITS:
            return format(value, "f")
    return str(value)


def _json_text(value: Any) -> str:
    """A JSON container as Postgres renders it (``", "`` and ``": "``), numbers as text.

    Walked with an explicit stack: a stored value nested a thousand deep renders too.
    """
    parts: list[str] = []
    # Each item is text to emit as is, or a value to render.
    pending: list[tuple[bool, Any]] = [(False, value)]
    while pending:
        literal, item = pending.pop()
        if literal:
            parts.append(item)
        elif isinstance(item, dict):
            todo: list[tuple[bool, Any]] = [(True, "{")]
            for n, (key, nested) in enumerate(item.items()):
                todo += [(True, (", " if n else "") + json.dumps(str(key)) + ": "), (False, nested)]
            todo.append((True, "}"))
            pending.extend(reversed(todo))
        elif isinstance(item, list | tuple):
            todo = [(True, "[")]
            for n, nested in enumerate(item):
                todo += [(True, ", ")] if n else []
                todo.append((False, nested))
            todo.append((True, "]"))
            pending.extend(reversed(todo))
        elif isinstance(item, str):
            parts.append(json.dumps(item))
        else:
            text = property_text(item)
            parts.append("null" if text is None else text)
    return "".join(parts)


def property_text(value: Any) -> str | None:
    """Render a JSON property value as Postgres ``->>`` does; ``None`` for JSON null.

    Numbers far outside any domain (more than 1,000 digits) render in E notation instead.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -VALUE_LIMIT < value < VALUE_LIMIT:
            return str(value)
        return _decimal_text(Decimal(value))
    if isinstance(value, float):
        # Decoders should hand numbers over as Decimal (msgspec's float_hook) to keep their
        # text; a float is rendered through its shortest round-tripping repr, without exponent.
        return _decimal_text(Decimal(repr(value)))
    if isinstance(value, Decimal):
        return _decimal_text(value)
    return _json_text(value)


def numeric_value(value: Any) -> Decimal | None:
    """The value as a Decimal if Lago would aggregate it and it lies in the domain, else
    ``None`` (skipped everywhere)."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool) and not in_domain(value):
        return None
    text = property_text(value)
    if text is None or _NUMERIC.fullmatch(text) is None:
        return None
    number = Decimal(text)
    return number if in_domain(number) else None
