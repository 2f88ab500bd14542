"""Exact folding of events (or partial sums of events) into count, sum and max per group.

Both adapters fold with this, so raw scans, rollup rows and the memory fake agree to the last
digit: sums run in a decimal context wide enough that addition never rounds.
"""

from __future__ import annotations

import decimal
from collections.abc import Hashable, Iterator
from decimal import Decimal
from typing import Generic, TypeVar

from metering.ports import GroupAggregate

__all__ = ["Fold", "GroupFolder", "exact_context", "group_results", "group_sort_key"]

K = TypeVar("K", bound=Hashable)


def exact_context() -> decimal.Context:
    """A context in which adding decimals is exact (the default one rounds at 28 digits)."""
    return decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


class Fold:
    """Running count, numeric count, sum and max of one group."""

    __slots__ = ("events", "maximum", "numeric_events", "total")

    def __init__(self) -> None:
        self.events = 0
        self.numeric_events = 0
        self.total = Decimal(0)
        self.maximum: Decimal | None = None

    def add(
        self,
        ctx: decimal.Context,
        events: int,
        numeric_events: int,
        total: Decimal,
        maximum: Decimal | None,
    ) -> None:
        """Merge a partial fold (one event, or a rollup row) into this one."""
        self.events += events
        if numeric_events:
            self.numeric_events += numeric_events
            self.total = ctx.add(self.total, total)
        if maximum is not None and (self.maximum is None or maximum > self.maximum):
            self.maximum = maximum


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

    def add_event(self, key: K, value: Decimal | None) -> None:
        """Count one event; ``value`` is its numeric field (``None`` when it does not qualify)."""
        fold = self._fold(key)
        if value is None:
            fold.events += 1
        else:
            fold.add(self._ctx, 1, 1, value, value)

    def add_partial(
        self, key: K, events: int, numeric_events: int, total: Decimal, maximum: Decimal | None
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
    results = [
        GroupAggregate(
            values=values,
            events=fold.events,
            numeric_events=fold.numeric_events,
            total=fold.total,
            maximum=fold.maximum,
        )
        for values, fold in folder.items()
    ]
    results.sort(key=lambda r: group_sort_key(r.values))
    return results
