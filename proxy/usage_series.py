"""``GET /v1/usage?from=&to=&window=&group_by=``: a key's own token usage as a time series.

Read from the store's rollups (:meth:`metering.ports.Store.aggregate_series`), so a dashboard
polling it costs the number of windows, not the number of requests.

Semantics, all of them in the answer so a client can check what it got:

- ``from`` (required) and ``to`` (default: now) are ISO 8601 times or dates; without an offset
  they are UTC. ``from`` is inclusive and ``to`` exclusive, so ``from=2025-06-01&to=2025-06-02``
  is exactly one day.
- ``window`` is ``hour`` or ``day`` (default), whole UTC hours or days. Every window of the range
  is listed, empty ones too; the first and last are clipped to ``from``/``to`` and count only
  their part inside the range. At most :data:`MAX_WINDOWS` windows per query.
- ``group_by`` is any of ``model``, ``type``, ``key`` (comma-separated or repeated).
- Only the calling key's own events are counted. ``group_by=key`` therefore yields one group,
  the caller's key: on a subscription shared by several keys, no key is shown another key's id
  or usage (the subscription's total is in the current-period view, ``GET /v1/usage``).
- Token units only: amounts depend on the period's whole usage (packages, tiers), so they are
  given per billing period by the current-period view, never per window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from config import MeteringSettings
from metering.models import ApiKey
from metering.ports import AggregateQuery, Store, Window, WindowAggregate
from proxy.errors import GatewayError

__all__ = ["MAX_WINDOWS", "SERIES_PARAMS", "SeriesQuery", "parse_series_query", "usage_series"]

#: Most windows one query may span (a month of hours, or a bit under three years of days).
MAX_WINDOWS = 1000
#: The query parameters that ask for a series rather than the current period.
SERIES_PARAMS = ("from", "to", "window", "group_by")

_WINDOW_LENGTH = {Window.HOUR: timedelta(hours=1), Window.DAY: timedelta(days=1)}
_MICROSECOND = timedelta(microseconds=1)
# Bounds that keep every window's arithmetic inside datetime's range.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class SeriesQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A validated series request: ``[start, end)`` cut into ``window`` steps."""

    start: datetime
    end: datetime
    window: Window
    group_by: tuple[str, ...]


def _moment(text: str) -> datetime:
    """An ISO 8601 time or date; naive means UTC. ValueError when it is neither."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _window_start(moment: datetime, window: Window) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if window is Window.HOUR else hour.replace(hour=0)


def _windows(query: SeriesQuery) -> list[tuple[datetime, datetime]]:
    """Every window of the range as clipped (start, end) pairs."""
    step = _WINDOW_LENGTH[query.window]
    aligned = _window_start(query.start, query.window)
    spans = []
    while aligned < query.end:
        spans.append((max(aligned, query.start), min(aligned + step, query.end)))
        aligned += step
    return spans


def parse_series_query(params: Mapping[str, Sequence[str]], now: datetime) -> SeriesQuery:
    """Validate the query parameters; one 400 lists every problem found."""
    problems: dict[str, str] = {}
    for name in params:
        if name not in SERIES_PARAMS:
            problems[name] = f"unknown parameter (expected: {', '.join(SERIES_PARAMS)})"

    def single(name: str) -> str | None:
        values = params.get(name, ())
        if len(values) > 1:
            problems[name] = "give it once"
            return None
        return values[0] if values else None

    start = end = None
    for name in ("from", "to"):
        text = single(name)
        if text is None:
            continue
        try:
            moment = _moment(text)
        except ValueError:
            problems[name] = "must be an ISO 8601 time or date (2025-06-01T12:00:00Z)"
            continue
        if not _EARLIEST <= moment <= _LATEST:
            problems[name] = "must lie between 1970 and 9998"
            continue
        if name == "from":
            start = moment
        else:
            end = moment
    if start is None and "from" not in problems:
        problems["from"] = "is required for a time series"
    end = end or now
    window_text = single("window") or Window.DAY.value
    try:
        window = Window(window_text)
    except ValueError:
        problems["window"] = "must be hour or day"
        window = Window.DAY
    group_by: list[str] = []
    for value in params.get("group_by", ()):
        for item in filter(None, (part.strip() for part in value.split(","))):
            if item not in ("model", "type", "key"):
                problems["group_by"] = "must be model, type or key (comma-separated)"
            elif item not in group_by:
                group_by.append(item)
    if start is not None and "to" not in problems:
        if start >= end:
            problems["to"] = "must be after from"
        else:
            step = _WINDOW_LENGTH[window]
            last = _window_start(end - _MICROSECOND, window)
            count = (last - _window_start(start, window)) // step + 1
            if count > MAX_WINDOWS:
                problems["window"] = (
                    f"the range spans {count} {window.value} windows; at most {MAX_WINDOWS}"
                )
    if problems or start is None:
        listing = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        raise GatewayError(
            "invalid_request",
            f"Invalid usage query: {listing}",
            code="invalid_usage_query",
            param=",".join(problems),
        )
    return SeriesQuery(start=start, end=end, window=window, group_by=tuple(group_by))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tokens(total: Decimal) -> int | str:
    return int(total) if total == int(total) else str(total)


async def usage_series(
    store: Store, key: ApiKey, query: SeriesQuery, settings: MeteringSettings
) -> dict[str, Any]:
    """The key's own usage per window, grouped as asked (see the module docstring)."""
    dims = {"model": settings.model_property, "type": settings.type_property}
    wanted = [name for name in query.group_by if name != "key"]
    found = await store.aggregate_series(
        AggregateQuery(
            external_subscription_id=key.external_subscription_id,
            code=settings.metric_code,
            from_ts=query.start,
            to_ts=query.end - _MICROSECOND,
            field_name=settings.field_name,
            # key_id first: it selects the caller's own rows, which are all it may see.
            group_keys=("key_id", *(dims[name] for name in wanted)),
        ),
        query.window,
    )
    by_start: dict[datetime, WindowAggregate] = {w.start: w for w in found}
    data = []
    for start, end in _windows(query):
        results = []
        found_window = by_start.get(_window_start(start, query.window))
        for group in found_window.groups if found_window is not None else ():
            if group.values[0] != key.id:
                continue
            row: dict[str, Any] = dict(zip(wanted, group.values[1:], strict=True))
            if "key" in query.group_by:
                row["key_id"] = key.id
            row["tokens"] = _tokens(group.total)
            row["events_count"] = group.events
            results.append(row)
        data.append({"start": _iso(start), "end": _iso(end), "results": results})
    return {
        "object": "usage.series",
        "from": _iso(query.start),
        "to": _iso(query.end),
        "window": query.window.value,
        "group_by": list(query.group_by),
        "data": data,
    }
