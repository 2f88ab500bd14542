"""Which priced bucket of a charge an event lands in (reference/lago-semantics.md section 2).

A charge with filters has one bucket per charge filter plus a default bucket; a charge without
filters has the default bucket only. Bucket ids are the charge filter ids, and
:data:`DEFAULT_BUCKET` (``None``) for the default bucket.

Each bucket is Lago's pair (matching filter, exclusions), computed once per (metric, charge):

- the bucket's events match the filter: every key present, its text value among the filter's
  (expanded) values;
- and match none of the exclusions, where a missing property counts as ``''`` and keys whose
  value list is empty are ignored (an exclusion with no such key excludes nothing).

Bucket membership only depends on the text values of the charge's filter keys, so a
:class:`BucketMatcher` answers for a tuple of values, which is what the store groups by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

import msgspec

from metering.models import ALL_FILTER_VALUES, BillableMetric, Charge, ChargeFilter, Event
from metering.values import property_text

__all__ = [
    "DEFAULT_BUCKET",
    "Bucket",
    "BucketId",
    "BucketMatcher",
    "BucketMatchers",
    "FilterValues",
    "bucket_for",
    "compile_buckets",
    "expand_filter_values",
    "matching_and_ignored",
]

#: A bucket: a charge filter id, or ``None`` for the default ("no filter") bucket.
BucketId = str | None
#: Property key -> accepted text values.
FilterValues = dict[str, tuple[str, ...]]

DEFAULT_BUCKET: BucketId = None


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One priced bucket: what it matches and what it leaves to other buckets."""

    id: BucketId
    filter: ChargeFilter | None
    matching: FilterValues
    exclusions: tuple[FilterValues, ...]

    def contains(self, values: Mapping[str, str | None]) -> bool:
        """Whether an event with these filter-key text values (``None``: absent) is counted here."""
        for key, accepted in self.matching.items():
            value = values.get(key)
            if value is None or value not in accepted:
                return False
        return not any(_excluded(values, exclusion) for exclusion in self.exclusions)


def _excluded(values: Mapping[str, str | None], exclusion: FilterValues) -> bool:
    # Lago: NOT (coalesce(prop, '') IN (...) AND ...), skipping keys with an empty value list.
    clauses = [(key, accepted) for key, accepted in exclusion.items() if accepted]
    if not clauses:
        return False
    return all((values.get(key) or "") in accepted for key, accepted in clauses)


def expand_filter_values(metric: BillableMetric, charge_filter: ChargeFilter) -> FilterValues:
    """The filter's values with ``["__ALL_FILTER_VALUES__"]`` replaced by the metric's values."""
    metric_values = {f.key: f.values for f in metric.filters}
    expanded: FilterValues = {}
    for key, values in charge_filter.values.items():
        if tuple(values) == (ALL_FILTER_VALUES,) and key in metric_values:
            expanded[key] = tuple(metric_values[key])
        else:
            expanded[key] = tuple(values)
    return expanded


def _is_child(parent: FilterValues, child: FilterValues) -> bool:
    # A child holds every key of the parent and shares at least one value on each of them.
    return all(
        any(value in child.get(key, ()) for value in values) for key, values in parent.items()
    )


def _sort_key(charge_filter: ChargeFilter) -> tuple[object, str]:
    return (charge_filter.created_at, charge_filter.id)


def _exclusion(
    target: ChargeFilter | None,
    matching: FilterValues,
    child: ChargeFilter,
    child_values: FilterValues,
) -> FilterValues | None:
    if set(child_values) != set(matching):
        return dict(child_values)
    if all(sorted(v) == sorted(matching[k]) for k, v in child_values.items()):
        # Identical filters: only the oldest counts; it drops its newer twins, and every newer
        # twin keeps the older ones (the default bucket is always "the newest").
        if target is not None and _sort_key(child) >= _sort_key(target):
            return None
        return dict(child_values)
    if all(set(v) <= set(matching[k]) for k, v in child_values.items()):
        return dict(child_values)
    raw = target.values if target is not None else {}
    return {
        key: values
        if tuple(raw.get(key, ())) == (ALL_FILTER_VALUES,)
        else tuple(v for v in values if v not in matching[key])
        for key, values in child_values.items()
    }


def matching_and_ignored(
    metric: BillableMetric,
    charge: Charge,
    target: ChargeFilter | None,
    expanded: Mapping[str, FilterValues] | None = None,
    candidates: Set[str] | None = None,
) -> tuple[FilterValues, list[FilterValues]]:
    """Lago's (matching filters, ignored filters) for one bucket; ``None`` is the default bucket.

    Exclusions come in the charge's filter order, like Lago's ``ignored_filters``. ``expanded``
    (filter id -> expanded values) saves re-expanding every filter for every bucket, and
    ``candidates`` (ids that may be children, see :class:`_ValueIndex`) skips the others.
    """
    if expanded is None:
        expanded = {f.id: expand_filter_values(metric, f) for f in charge.filters}
    matching = expanded[target.id] if target is not None else {}
    ignored: list[FilterValues] = []
    for other in charge.filters:
        if target is not None and other.id == target.id:
            continue
        if candidates is not None and other.id not in candidates:
            continue
        other_values = expanded[other.id]
        if not _is_child(matching, other_values):
            continue
        exclusion = _exclusion(target, matching, other, other_values)
        if exclusion is not None:
            ignored.append(exclusion)
    return matching, ignored


class _ValueIndex:
    """Which filters hold a value on a key, so a bucket's possible children are found by set
    intersections instead of testing every pair of filters (a 48-filter plan: 2,300 pairs)."""

    def __init__(self, expanded: Mapping[str, FilterValues]) -> None:
        self._by_value: dict[tuple[str, str], set[str]] = {}
        for filter_id, values in expanded.items():
            for key, accepted in values.items():
                for value in accepted:
                    self._by_value.setdefault((key, value), set()).add(filter_id)

    def candidates(self, matching: FilterValues) -> set[str] | None:
        """Ids sharing at least one value on every key of ``matching`` (None: no key, all)."""
        found: set[str] | None = None
        for key, accepted in matching.items():
            holders: set[str] = set()
            for value in accepted:
                holders |= self._by_value.get((key, value), set())
            found = holders if found is None else found & holders
        return found


class BucketMatcher:
    """The buckets of one (metric, charge), compiled once, assigning value tuples to buckets.

    ``keys`` are the filter keys (sorted) whose values decide membership: group the store's
    aggregates by them and hand each group's values to :meth:`buckets_for_row`.
    """

    def __init__(self, metric: BillableMetric, charge: Charge) -> None:
        buckets: list[Bucket] = []
        expanded = {f.id: expand_filter_values(metric, f) for f in charge.filters}
        index = _ValueIndex(expanded)
        for charge_filter in charge.filters:
            candidates = index.candidates(expanded[charge_filter.id])
            matching, ignored = matching_and_ignored(
                metric, charge, charge_filter, expanded, candidates
            )
            buckets.append(
                Bucket(
                    id=charge_filter.id,
                    filter=charge_filter,
                    matching=matching,
                    exclusions=tuple(ignored),
                )
            )
        _, default_ignored = matching_and_ignored(metric, charge, None, expanded)
        buckets.append(
            Bucket(id=DEFAULT_BUCKET, filter=None, matching={}, exclusions=tuple(default_ignored))
        )
        self.buckets: tuple[Bucket, ...] = tuple(buckets)
        self.keys: tuple[str, ...] = tuple(sorted({k for f in charge.filters for k in f.values}))
        # Few distinct value tuples exist per period; remember each answer.
        self._cache: dict[tuple[str | None, ...], tuple[BucketId, ...]] = {}

    @property
    def bucket_ids(self) -> tuple[BucketId, ...]:
        """Every bucket id: the charge filters in order, then the default bucket."""
        return tuple(bucket.id for bucket in self.buckets)

    def buckets_for(self, values: Mapping[str, str | None]) -> tuple[BucketId, ...]:
        """The buckets counting an event with these filter-key values (possibly several)."""
        return self.buckets_for_row(tuple(values.get(key) for key in self.keys))

    def buckets_for_row(self, row: Sequence[str | None]) -> tuple[BucketId, ...]:
        """Like :meth:`buckets_for`, with the values given in :attr:`keys` order."""
        row_key = tuple(row)
        found = self._cache.get(row_key)
        if found is None:
            values = dict(zip(self.keys, row_key, strict=True))
            found = tuple(bucket.id for bucket in self.buckets if bucket.contains(values))
            self._cache[row_key] = found
        return found

    def buckets_for_event(self, event: Event) -> tuple[BucketId, ...]:
        """The buckets counting this event."""
        properties = event.properties
        return self.buckets_for_row(tuple(property_text(properties.get(k)) for k in self.keys))


def compile_buckets(metric: BillableMetric, charge: Charge) -> BucketMatcher:
    """Compile the buckets of ``charge`` (over ``metric``) once, to assign many groups or events."""
    return BucketMatcher(metric, charge)


class BucketMatchers:
    """Compiled matchers reused across calls, keyed by the exact (metric, charge) they price.

    Compiling a 48-filter charge and answering its value tuples costs more than reading its
    rollups; a service pricing the same plan again and again keeps one of these. The key is the
    records' encoding, so any change to the metric or charge compiles afresh. At most
    ``limit`` matchers are kept (the oldest go first).
    """

    def __init__(self, limit: int = 256) -> None:
        self._limit = limit
        self._compiled: dict[bytes, BucketMatcher] = {}

    def get(self, metric: BillableMetric, charge: Charge) -> BucketMatcher:
        """The matcher of ``charge`` over ``metric``, compiled on first use."""
        key = msgspec.msgpack.encode((metric, charge))
        matcher = self._compiled.get(key)
        if matcher is None:
            if len(self._compiled) >= self._limit:
                del self._compiled[next(iter(self._compiled))]
            matcher = self._compiled[key] = compile_buckets(metric, charge)
        return matcher


def bucket_for(
    metric: BillableMetric, charge: Charge, values: Mapping[str, str | None]
) -> list[BucketId]:
    """The buckets counting an event whose filter properties have these text values.

    A list, because filters over disjoint keys (or partially overlapping values) can both count
    one event, as Lago does.
    """
    return list(compile_buckets(metric, charge).buckets_for(values))
