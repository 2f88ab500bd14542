"""Exact folding of events (or partial sums of events) into count, sum and max per group.

Both adapters fold with this, so raw scans, rollup rows and the memory fake agree to the last
digit: sums run in a decimal context wide enough that addition never rounds.

A rollup row's numbers are read through :func:`rollup_number`: one that no version of this
code could have written from values of the numeric domain (``NaN``, text that is not a
decimal, a sum of values outside the domain written by an older version) raises
:class:`UnreadableRollup`, and the reader answers from the raw events instead, where such a
value is skipped (``metering.values``): exact for every other event, never a failed read.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Hashable, Iterator
from decimal import Decimal
from typing import Generic, TypeVar

from metering.ports import GroupAggregate
from metering.values import MAX_PLACES, SUM_LIMIT

__all__ = [
    "Fold",
    "GroupFolder",
    "Number",
    "UnreadableRollup",
    "exact_context",
    "group_results",
    "group_sort_key",
    "rollup_number",
]

K = TypeVar("K", bound=Hashable)


def exact_context() -> decimal.Context:
    """A context in which adding decimals is exact (the default one rounds at 28 digits)."""
    return decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


#: A folded number: an ``int`` while every value added was an int (token counts are, and int
#: addition is several times cheaper than Decimal's), a ``Decimal`` once any was not.
Number = int | Decimal

# The text of a decimal as str(Decimal) writes it (what the SQLite rollups store).
_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?(E[+-]?\d+)?")


class UnreadableRollup(Exception):
    """A rollup row holds a number that no sum of domain values can be: read raw instead."""


def rollup_number(value: object, limit: int = SUM_LIMIT) -> Number:
    """A rollup total (or, with ``limit`` = ``VALUE_LIMIT``, a maximum) as stored: an int, a
    Decimal, or decimal text. Raises :class:`UnreadableRollup` for anything else: not a
    finite decimal, not smaller than ``limit`` in magnitude, or more than ``MAX_PLACES``
    places."""
    if type(value) is int:
        if -limit < value < limit:
            return value
        raise UnreadableRollup(value)
    if type(value) is str and len(value) < 200 and _DECIMAL_TEXT.fullmatch(value):
        number = Decimal(value)
    elif type(value) is Decimal:
        number = value
    else:
        raise UnreadableRollup(repr(value)[:100])
    if not number.is_finite() or not -limit < number < limit:
        raise UnreadableRollup(str(number)[:100])
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        raise UnreadableRollup(str(number)[:100])
    return number


class Fold:
    """Running count, numeric count, sum and max of one group."""

    __slots__ = ("events", "maximum", "numeric_events", "total")

    def __init__(self) -> None:
        self.events = 0
        self.numeric_events = 0
        self.total: Number = 0
        self.maximum: Number | None = None

    def add(
        self,
        ctx: decimal.Context,
        events: int,
        numeric_events: int,
        total: Number,
        maximum: Number | None,
    ) -> None:
        """Merge a partial fold (one event, or a rollup row) into this one."""
        self.events += events
        if numeric_events:
            self.numeric_events += numeric_events
            current = self.total
            if type(current) is int and type(total) is int:
                self.total = current + total
            else:
                # Never int + Decimal: that would round in the thread's default context.
                self.total = ctx.add(current, total)
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = maximum

    def result(self, values: tuple[str | None, ...]) -> GroupAggregate:
        """This fold as the protocol's :class:`GroupAggregate` (numbers as Decimal)."""
        return GroupAggregate(
            values=values,
            events=self.events,
            numeric_events=self.numeric_events,
            total=Decimal(self.total),
            maximum=None if self.maximum is None else Decimal(self.maximum),
        )


class GroupFolder(Generic[K]):
    """Folds into one :class:`Fold` per key."""

    def __init__(self) -> None:
        self._ctx = exact_context()
        self._groups: dict[K, Fold] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def _fold(self, key: K) -> Fold:
        fold = self._groups.get(key)
        if fold is None:
            fold = self._groups[key] = Fold()
        return fold

    def add_event(self, key: K, value: Number | None) -> None:
        """Count one event; ``value`` is its numeric field (``None`` when it does not qualify)."""
        fold = self._fold(key)
        if value is None:
            fold.events += 1
        else:
            fold.add(self._ctx, 1, 1, value, value)

    def add_partial(
        self, key: K, events: int, numeric_events: int, total: Number, maximum: Number | None
    ) -> None:
        """Merge an already folded partial (a rollup row) into the key's group."""
        self._fold(key).add(self._ctx, events, numeric_events, total, maximum)

    def items(self) -> Iterator[tuple[K, Fold]]:
        """Every (key, fold) pair, in insertion order."""
        return iter(self._groups.items())


def group_sort_key(values: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    """Orders group value tuples deterministically, ``None`` (property absent) first."""
    return tuple((v is not None, v or "") for v in values)


def group_results(folder: GroupFolder[tuple[str | None, ...]]) -> list[GroupAggregate]:
    """The folder's groups as :class:`GroupAggregate`, sorted by their values."""
    results = [fold.result(values) for values, fold in folder.items()]
    results.sort(key=lambda r: group_sort_key(r.values))
    return results
