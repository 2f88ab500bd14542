"""What a store can hold: the limits on an event's text and numbers, checked at ingestion.

Every store must be able to keep, index and read back whatever ingestion accepts, so the
edge refuses (Lago's 422, every issue listed) what one of them could not:

- text (ids, property names, string values) holding ``U+0000`` (PostgreSQL ``text`` cannot)
  or a lone surrogate (not encodable as UTF-8, so no store can write it);
- ids, property names and property values longer than :data:`MAX_TEXT` characters. Ids are
  index keys, and the texts of a metric's filter properties are part of a rollup row's key:
  PostgreSQL refuses an index entry over 2,704 bytes, and with :data:`MAX_TEXT` a rollup key of
  ASCII text (code, subscription and three filter values) stays well below it;
- numbers outside the metered domain of :mod:`metering.values` (at most 20 digits before and
  20 after the point), JSON numbers and numeric text alike, anywhere in the properties; text
  that spells a number that is not finite (``"NaN"``, ``"Infinity"``, ``"-inf"``, any case) is
  refused too, since the client evidently meant a number and it would silently bill nothing.

Codes are Lago's: ``value_is_invalid``, ``value_is_too_long``, ``value_is_out_of_range``.
Issues about a property's value are keyed ``properties.<name>``; a bad property name is an
issue of ``properties`` itself (the name is not echoed back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from metering.errors import IssueMap, add_issue
from metering.values import VALUE_LIMIT, in_domain, property_text

__all__ = [
    "MAX_TEXT",
    "number_issue",
    "plain_text",
    "property_issues",
    "text_issue",
    "unstorable_text",
]

#: The most characters an id, a property name or a property value's text may have.
MAX_TEXT = 255

_INVALID = "value_is_invalid"
_TOO_LONG = "value_is_too_long"
_OUT_OF_RANGE = "value_is_out_of_range"
_SURROGATE = re.compile("[\ud800-\udfff]")
# Text Decimal() might read as a number: worth the (costly when it fails) attempt.
_MAYBE_NUMBER = re.compile(r"\s*[+-]?(?:\d|\.\d|inf|nan|snan)", re.IGNORECASE)
# The ASCII characters such text can start with ("" is never a number); the words among it.
_NUMBER_FIRST = frozenset("0123456789+-. \t\n\r\x0b\x0ciInNsS")
_WORD_FIRST = frozenset("iInNsS")
_NOT_FINITE = frozenset({"inf", "infinity", "nan", "snan"})


def text_issue(text: str) -> str | None:
    """Why a store cannot hold ``text`` as an id, a property name or a value; ``None`` if it can."""
    if len(text) > MAX_TEXT:
        return _TOO_LONG
    return _INVALID if _unstorable(text) else None


def _unstorable(text: str) -> bool:
    """Whether ``text`` holds a character no store can keep (NUL, a lone surrogate)."""
    return "\x00" in text or (not text.isascii() and _SURROGATE.search(text) is not None)


def unstorable_text(document: Mapping[str, Any]) -> IssueMap:
    """Every field of an admin input (a customer, plan, metric, subscription...) whose text no
    store can hold: ``U+0000`` or a lone surrogate, in a name or a value, at any depth.

    Issues are keyed by the top-level field they were found under (``value_is_invalid``). Unlike
    events, these inputs keep their own length rules (a description may be long).
    """
    issues: IssueMap = {}
    for field, value in document.items():
        pending: list[Any] = [field, value]  # walked without recursion: any depth is fine
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                if _unstorable(item):
                    add_issue(issues, str(field), _INVALID)
                    break
            elif isinstance(item, Mapping):
                for key, nested in item.items():
                    pending += (key, nested)
            elif isinstance(item, list | tuple):
                pending.extend(item)
    return issues


def number_issue(value: Any) -> str | None:
    """Why ``value`` (a JSON number, or text that reads as one) is outside the domain."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return None if in_domain(value) else _OUT_OF_RANGE
    if isinstance(value, float):
        return None if in_domain(Decimal(repr(value))) else _OUT_OF_RANGE
    if isinstance(value, str) and _MAYBE_NUMBER.match(value) is not None:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None  # not a number at all: text like any other
        if not number.is_finite():
            return _INVALID
        return None if in_domain(number) else _OUT_OF_RANGE
    return None


def _value_issue(value: Any) -> str | None:
    # The usual values first: a short string or a small int costs two tests.
    kind = type(value)
    if kind is str:
        return text_issue(value) or number_issue(value)
    if kind is int or kind is Decimal or kind is float:
        return number_issue(value)
    if value is None or kind is bool:
        return None
    return _container_issue(value)


def _container_issue(value: Any) -> str | None:
    """The first issue inside a nested object or array (walked without recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            for key, nested in item.items():
                issue = text_issue(key) if isinstance(key, str) else _INVALID
                if issue is not None:
                    return issue
                pending.append(nested)
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, str):
            issue = text_issue(item) or number_issue(item)
            if issue is not None:
                return issue
        else:
            issue = number_issue(item)
            if issue is not None:
                return issue
    text = property_text(value)
    return _TOO_LONG if text is not None and len(text) > MAX_TEXT else None


def _add_property_issue(issues: IssueMap, key: Any, value: Any) -> None:
    if type(key) is not str:
        add_issue(issues, "properties", _INVALID)
        return
    key_issue = text_issue(key)
    if key_issue is not None:
        if key_issue not in issues.get("properties", ()):
            add_issue(issues, "properties", key_issue)
        return
    issue = _value_issue(value)
    if issue is not None:
        add_issue(issues, f"properties.{key}", issue)


def plain_text(text: str) -> bool:
    """Whether ``text`` is short ASCII without NUL: surely storable (``False``: ask
    :func:`text_issue`). The batch API's fast path asks this of every id."""
    return len(text) <= MAX_TEXT and text.isascii() and "\x00" not in text


def property_issues(properties: Mapping[Any, Any]) -> IssueMap:
    """Every property a store could not hold: ``{"properties.<name>": [code]}`` per value,
    ``{"properties": [codes]}`` for names."""
    issues: IssueMap = {}
    for key, value in properties.items():
        # The usual property (a short ASCII name, a short ASCII word or a small int) passes
        # a few cheap tests: the batch API runs this for every property of every event.
        if type(key) is str and len(key) <= MAX_TEXT and key.isascii() and "\x00" not in key:
            kind = type(value)
            if kind is str:
                if len(value) <= MAX_TEXT and value.isascii() and "\x00" not in value:
                    first = value[:1]
                    if first not in _NUMBER_FIRST:
                        continue
                    # A word like "input": not NaN or infinity, nor NaN with a payload.
                    word = value.rstrip().lower()  # Decimal() ignores trailing space
                    if first in _WORD_FIRST and word not in _NOT_FINITE and not word[-1].isdigit():
                        continue
            elif kind is int and -VALUE_LIMIT < value < VALUE_LIMIT:
                continue
        _add_property_issue(issues, key, value)
    return issues
