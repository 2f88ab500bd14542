"""Lago's customer upsert rules (reference/lago-semantics.md section 7), without HTTP or clock.

``POST /customers`` is an upsert by ``external_id``: a new external id creates the customer,
a known one updates the fields the body carries (absent fields are kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import msgspec

from metering.errors import ValidationFailed
from metering.models import Customer

__all__ = [
    "CUSTOMER_FIELDS",
    "build_customer",
    "known_currency",
    "valid_timezone",
    "validate_customer",
]

# ISO 4217 active currency codes (funds, metals and test codes left out).
_ISO_4217 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS
    INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR
    PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
    SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYI UYU UYW UZS
    VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
_CURRENCIES = frozenset(_ISO_4217.split())
#: The optional text fields tallygate keeps on a customer.
_TEXT_FIELDS = ("name", "email")
#: Every field of Lago's customer input (``lago-python-client``'s ``Customer`` model sends them
#: all, mostly null); those tallygate does not keep are accepted and dropped, as Lago drops
#: them when unset. Any other key is an ``unknown_field`` issue (a typo, not a Lago client).
CUSTOMER_FIELDS = frozenset(
    [
        "external_id",
        "address_line1",
        "address_line2",
        "city",
        "country",
        "currency",
        "email",
        "legal_name",
        "legal_number",
        "net_payment_term",
        "tax_identification_number",
        "logo_url",
        "name",
        "firstname",
        "lastname",
        "customer_type",
        "phone",
        "state",
        "timezone",
        "url",
        "zipcode",
        "metadata",
        "finalize_zero_amount_invoice",
        "billing_configuration",
        "shipping_address",
        "integration_customers",
        "tax_codes",
        "skip_invoice_custom_sections",
        "invoice_custom_section_codes",
        "billing_entity_code",
        "account_type",
    ]
)


@cache
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def valid_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone name (``Europe/Paris``, ``UTC``)."""
    return name in _timezones()


def known_currency(code: str) -> bool:
    """Whether ``code`` is an ISO 4217 currency (upper case, as Lago requires)."""
    return code in _CURRENCIES


def validate_customer(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every problem of a customer input, Lago-style; empty when it is acceptable."""
    issues: dict[str, list[str]] = {}
    for key in sorted(set(raw) - CUSTOMER_FIELDS):
        issues[key] = ["unknown_field"]
    external_id = raw.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        issues["external_id"] = ["value_is_mandatory"]
    timezone = raw.get("timezone")
    if timezone is not None and not (isinstance(timezone, str) and valid_timezone(timezone)):
        issues["timezone"] = ["invalid_timezone"]
    currency = raw.get("currency")
    if currency is not None and not (isinstance(currency, str) and known_currency(currency)):
        issues["currency"] = ["value_is_invalid"]
    for field in _TEXT_FIELDS:
        value = raw.get(field)
        if value is not None and not isinstance(value, str):
            issues[field] = ["value_is_invalid"]
    return issues


def build_customer(
    raw: Mapping[str, Any],
    *,
    existing: Customer | None,
    id: str,
    now: datetime,
    sequential_id: int,
) -> Customer:
    """The customer after the upsert: ``existing`` updated, or a new one with ``id``.

    ``id`` and ``sequential_id`` are only used for a new customer. Raises ValidationFailed
    with every issue of the input.
    """
    issues = validate_customer(raw)
    if issues:
        raise ValidationFailed(issues)
    changes: dict[str, Any] = {
        field: raw[field] for field in ("timezone", "currency", *_TEXT_FIELDS) if field in raw
    }
    if existing is not None:
        return msgspec.structs.replace(existing, updated_at=now, **changes)
    return Customer(
        id=id,
        external_id=str(raw["external_id"]),
        created_at=now,
        updated_at=now,
        sequential_id=sequential_id,
        **changes,
    )
