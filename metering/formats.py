"""Lago's wire formats for numbers and dates (reference/lago-semantics.md section 4).

- units are decimal strings the way Ruby's ``BigDecimal#to_s("F")`` writes them: no exponent,
  trailing zeros stripped, at least one decimal (``"4.0"``, ``"0.5"``, ``"48.44"``);
- amounts are integer cents: the amount rounded half-up to the currency's exponent, then scaled;
- datetimes are ISO 8601 UTC with seconds (``…T00:00:00Z``); event timestamps carry
  milliseconds (``…T00:00:00.000Z``); dates are ``YYYY-MM-DD``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from metering.rounding import exact, round_half_up

__all__ = [
    "amount_to_cents",
    "currency_exponent",
    "format_date",
    "format_datetime",
    "format_timestamp_ms",
    "format_units",
]

# ISO 4217 currencies whose minor unit is not 1/100 (the Money gem Lago uses agrees on these).
# Every other code has exponent 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def currency_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (USD 2, JPY 0, KWD 3)."""
    return _EXPONENTS.get(currency.upper(), 2)


def amount_to_cents(amount: Decimal, currency: str) -> int:
    """The amount in the currency's minor unit, rounded half-up (Lago's fee ``amount_cents``)."""
    exponent = currency_exponent(currency)
    rounded = round_half_up(amount, exponent)
    with exact():
        return int(rounded.scaleb(exponent))


def format_units(value: Decimal) -> str:
    """``value`` as ``BigDecimal#to_s("F")`` writes it: ``"4.0"``, ``"0.5"``, ``"15250.0"``."""
    if not value.is_finite():
        raise ValueError(f"units must be finite, got {value}")
    if value.is_zero():
        # Covers -0 and 0E-7 alike: BigDecimal prints a plain zero as "0.0".
        return "0.0"
    # Plain notation never rounds; then strip trailing zeros but keep one decimal.
    text = format(value, "f")
    if "." not in text:
        return f"{text}.0"
    text = text.rstrip("0")
    return f"{text}0" if text.endswith(".") else text


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment  # the usual case (records hold UTC): no conversion to pay for
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """ISO 8601 in UTC with whole seconds (fractions truncated): ``2022-03-31T23:59:59Z``."""
    # isoformat truncates excess precision like strftime, at a fraction of its cost.
    return _utc(moment).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def format_timestamp_ms(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds (truncated), as Lago writes event timestamps."""
    return _utc(moment).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def format_date(day: date) -> str:
    """``YYYY-MM-DD``."""
    return day.isoformat()
