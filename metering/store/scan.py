"""Folding raw events: how every adapter counts what it does not read from rollups.

The memory store answers every query this way; the SQL adapters do for queries their rollups
do not cover. One loop for all of them, so a raw scan cannot disagree between adapters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from metering.ports import AggregateQuery, GroupAggregate, WindowAggregate
from metering.store.folding import GroupFolder, group_results
from metering.store.rollups import bucket_start, event_value, group_values
from metering.store.series import SeriesKey, series_results

__all__ = ["scan_groups", "scan_series"]


def scan_groups(events: Iterable[Mapping[str, Any]], query: AggregateQuery) -> list[GroupAggregate]:
    """Count, sum and max per group of the events' ``properties``."""
    folder: GroupFolder[tuple[str | None, ...]] = GroupFolder()
    for properties in events:
        folder.add_event(
            group_values(properties, query.group_keys), event_value(properties, query.field_name)
        )
    return group_results(folder)


def scan_series(
    events: Iterable[tuple[int, Mapping[str, Any]]], query: AggregateQuery, grain: int
) -> list[WindowAggregate]:
    """Count, sum and max per window of ``grain`` and group, of ``(ts, properties)`` pairs."""
    folder: GroupFolder[SeriesKey] = GroupFolder()
    for ts, properties in events:
        folder.add_event(
            (bucket_start(ts, grain), group_values(properties, query.group_keys)),
            event_value(properties, query.field_name),
        )
    return series_results(folder)
