"""Rollups: which properties a code's rollup rows keep, and how a range splits into buckets.

A rollup row holds, for one (code, subscription, grain, bucket, dims), the count of events,
the count of numeric field values, their exact sum and their max. Three grains are kept side by
side, UTC hours, UTC days and UTC calendar months, so a query reads one row per dims for each
whole month it covers, day rows for the whole days at its edges, hour rows for the whole hours
beyond those, and raw events only for the partial hours at its two ends, whatever the number of
events. A calendar billing period in UTC is a single month row per dims. ``dims`` is the
canonical JSON array of the property texts of the code's rollup keys (``null`` when absent), in
the order of :attr:`RollupSpec.keys`. A query whose group keys are among those keys is
answered by re-grouping rollup rows instead of reading each event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import msgspec

from metering.models import BillableMetric, Event
from metering.ports import AggregateQuery
from metering.store.codec import to_micros
from metering.store.folding import GroupFolder, Number
from metering.values import VALUE_LIMIT, numeric_value, property_text

__all__ = [
    "DAY_US",
    "GRAINS",
    "HOUR_US",
    "MONTH",
    "DimsProjection",
    "RollupKey",
    "RollupSpec",
    "Split",
    "add_to_rollups",
    "bucket_start",
    "changed_specs",
    "coarser",
    "decode_spec",
    "encode_dims",
    "event_value",
    "group_values",
    "month_start",
    "rollup_deltas",
    "spec_for",
    "split_range",
]

#: Bucket lengths (grains), in microseconds. Days are whole multiples of hours.
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
#: The grain id of UTC calendar-month buckets. Months have no fixed length: this number only
#: names the grain in the ``grain`` column (bucket starts come from :func:`month_start`).
MONTH = 31 * DAY_US
GRAINS = (HOUR_US, DAY_US, MONTH)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: (code, external_subscription_id, grain, bucket start, dims JSON): the table's key.
RollupKey = tuple[str, str, int, int, str]


class RollupSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a code's rollup rows keep: the numeric field and the property keys (sorted)."""

    field_name: str | None
    keys: tuple[str, ...]

    def covers(self, query: AggregateQuery) -> bool:
        """Whether rollup rows built with this spec can answer ``query`` exactly."""
        # A query without a field only needs counts, which every spec has.
        field_ok = query.field_name is None or query.field_name == self.field_name
        return field_ok and set(query.group_keys) <= set(self.keys)


def spec_for(metric: BillableMetric, extra_keys: Iterable[str]) -> RollupSpec:
    """The rollup spec of a metric: its field, its filter keys plus the store's extra keys."""
    return RollupSpec(
        field_name=metric.field_name,
        keys=tuple(sorted({*metric.filter_keys, *extra_keys})),
    )


def bucket_start(micros: int, grain: int) -> int:
    """Start of the ``grain`` bucket holding ``micros`` (floor, also before 1970)."""
    return micros - micros % grain


def _ceil(micros: int, grain: int) -> int:
    return -bucket_start(-micros, grain)


def month_start(micros: int) -> int:
    """Start of the UTC calendar month holding ``micros``."""
    moment = _EPOCH + timedelta(microseconds=micros)
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - _EPOCH) // timedelta(microseconds=1)


def _month_ceil(micros: int) -> int:
    start = month_start(micros)
    if start == micros:
        return start
    # 32 days after a month's start always lands in the next month.
    return month_start(start + 32 * DAY_US)


class Split(NamedTuple):
    """An inclusive range cut into whole buckets and raw edges.

    ``rollups`` holds (grain, first bucket or None = unbounded, end bucket exclusive) ranges;
    ``raw`` holds inclusive microsecond ranges to read from events. Together they cover the
    range exactly once.
    """

    rollups: tuple[tuple[int, int | None, int], ...]
    raw: tuple[tuple[int, int], ...]


def _edges(
    grain: int, low: int | None, inner_low: int | None, inner_high: int, high: int
) -> list[tuple[int, int | None, int]]:
    # The ``grain`` buckets of [low, high) left outside the coarser range [inner_low, inner_high).
    ranges: list[tuple[int, int | None, int]] = []
    if low is not None and inner_low is not None and low < inner_low:
        ranges.append((grain, low, inner_low))
    if inner_high < high:
        ranges.append((grain, inner_high, high))
    return ranges


def split_range(from_us: int | None, to_us: int) -> Split | None:
    """Split ``[from_us, to_us]`` (inclusive), or ``None`` when it holds no whole hour.

    Coarsest first: whole months, then whole days outside them, then whole hours outside
    those; at most five rollup ranges and two raw ranges.
    """
    hours_to = bucket_start(to_us + 1, HOUR_US)  # first hour not wholly inside the range
    hours_from = None if from_us is None else _ceil(from_us, HOUR_US)
    if hours_from is not None and hours_from >= hours_to:
        return None
    raw = []
    if from_us is not None and hours_from is not None and from_us < hours_from:
        raw.append((from_us, hours_from - 1))
    if hours_to <= to_us:
        raw.append((hours_to, to_us))
    days_to = bucket_start(hours_to, DAY_US)
    days_from = None if hours_from is None else _ceil(hours_from, DAY_US)
    if days_from is not None and days_from >= days_to:
        return Split(((HOUR_US, hours_from, hours_to),), tuple(raw))
    months_to = month_start(days_to)
    months_from = None if days_from is None else _month_ceil(days_from)
    if months_from is not None and months_from >= months_to:
        rollups = [(DAY_US, days_from, days_to)]
    else:
        rollups = [(MONTH, months_from, months_to)]
        rollups += _edges(DAY_US, days_from, months_from, months_to, days_to)
    rollups += _edges(HOUR_US, hours_from, days_from, days_to, hours_to)
    return Split(tuple(rollups), tuple(raw))


def event_value(properties: Mapping[str, Any], field_name: str | None) -> Number | None:
    """The event's numeric field value under Lago's rule, ``None`` if it does not qualify.

    A JSON integer stays an ``int`` (bool is not one): exact, and the cheap case of folding.
    A value outside the numeric domain (stored by an older version) does not qualify.
    """
    if field_name is None:
        return None
    value = properties.get(field_name)
    if type(value) is int:
        return value if -VALUE_LIMIT < value < VALUE_LIMIT else None
    return numeric_value(value)


def group_values(properties: Mapping[str, Any], keys: Sequence[str]) -> tuple[str | None, ...]:
    """The property texts of ``keys`` (``None`` when a property is absent or null)."""
    # Once per event on every write and raw scan: strings (nearly every value) skip the call.
    return tuple([v if type(v) is str else property_text(v) for v in map(properties.get, keys)])


class DimsProjection:
    """Turns a rollup row's ``dims`` JSON into the query's group values.

    Many rows share a dims text (one per bucket), so each distinct text is decoded once.
    """

    def __init__(self, spec: RollupSpec, group_keys: Sequence[str]) -> None:
        self._positions = [spec.keys.index(key) for key in group_keys]
        self._seen: dict[str, tuple[str | None, ...]] = {}

    def __call__(self, dims: str) -> tuple[str | None, ...]:
        """The values of the group keys held in ``dims``, in the query's order."""
        group = self._seen.get(dims)
        if group is None:
            values = msgspec.json.decode(dims, type=tuple[str | None, ...])
            group = self._seen[dims] = tuple(values[i] for i in self._positions)
        return group


def encode_dims(values: tuple[str | None, ...]) -> str:
    """Canonical JSON of a dims tuple (compact array, order of the spec's keys)."""
    return msgspec.json.encode(values).decode()


def add_to_rollups(
    folder: GroupFolder[RollupKey],
    code: str,
    subscription: str,
    ts: int,
    properties: Mapping[str, Any],
    spec: RollupSpec,
    dims_cache: dict[tuple[str | None, ...], str] | None = None,
) -> None:
    """Fold one event into the increment of its hour (see :func:`coarser` for the rest).

    ``dims_cache`` (values -> encoded dims) spares re-encoding the few distinct dims of a batch.
    """
    values = group_values(properties, spec.keys)
    dims = None if dims_cache is None else dims_cache.get(values)
    if dims is None:
        dims = encode_dims(values)
        if dims_cache is not None:
            dims_cache[values] = dims
    key = (code, subscription, HOUR_US, ts - ts % HOUR_US, dims)  # bucket_start, inlined
    folder.add_event(key, event_value(properties, spec.field_name))


def coarser(hours: GroupFolder[RollupKey]) -> tuple[GroupFolder[RollupKey], ...]:
    """The day and month increments folded from hour increments (cheaper than from events)."""
    days: GroupFolder[RollupKey] = GroupFolder()
    for (code, subscription, _, bucket, dims), fold in hours.items():
        days.add_partial(
            (code, subscription, DAY_US, bucket_start(bucket, DAY_US), dims),
            fold.events,
            fold.numeric_events,
            fold.total,
            fold.maximum,
        )
    months: GroupFolder[RollupKey] = GroupFolder()
    month_of: dict[int, int] = {}  # a batch spans few days: compute each day's month once
    for (code, subscription, _, bucket, dims), fold in days.items():
        month = month_of.get(bucket)
        if month is None:
            month = month_of[bucket] = month_start(bucket)
        months.add_partial(
            (code, subscription, MONTH, month, dims),
            fold.events,
            fold.numeric_events,
            fold.total,
            fold.maximum,
        )
    return days, months


def decode_spec(field_name: str | None, keys: str) -> RollupSpec:
    """A spec from its stored row (``keys`` is the JSON array of key names)."""
    return RollupSpec(field_name=field_name, keys=tuple(msgspec.json.decode(keys, type=list[str])))


def changed_specs(
    current: Mapping[str, RollupSpec], wanted: Mapping[str, RollupSpec]
) -> dict[str, RollupSpec | None]:
    """Codes whose rollups must be rebuilt: code -> new spec (None = drop)."""
    return {
        code: wanted.get(code)
        for code in current.keys() | wanted.keys()
        if current.get(code) != wanted.get(code)
    }


def rollup_deltas(
    events: Iterable[Event],
    specs: Mapping[str, RollupSpec],
    folder: GroupFolder[RollupKey] | None = None,
) -> GroupFolder[RollupKey]:
    """Fold newly stored events into hour increments (into ``folder`` if given, else a new
    one, which is returned); codes without a spec are skipped."""
    if folder is None:
        folder = GroupFolder()
    dims_cache: dict[tuple[str | None, ...], str] = {}
    for event in events:
        spec = specs.get(event.code)
        if spec is not None:
            add_to_rollups(
                folder,
                event.code,
                event.external_subscription_id,
                to_micros(event.timestamp),
                event.properties,
                spec,
                dims_cache,
            )
    return folder
