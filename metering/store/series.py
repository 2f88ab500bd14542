"""Time series over rollups: how a range splits into UTC windows, and folding per window.

A series window is a whole UTC hour or day. Rollup buckets are UTC hours and days too, so every
rollup row and every raw event falls into exactly one window (``bucket_start`` of its bucket or
timestamp). :func:`series_split` cuts a range into the rollup ranges and raw ranges that cover it
exactly once: whole windows come from rollups of the window's own grain, and a window that the
range only partly covers (at most the first and the last) from hour rollups plus raw events.
"""

from __future__ import annotations

from collections.abc import Mapping

from metering.ports import GroupAggregate, Window, WindowAggregate
from metering.store.codec import from_micros
from metering.store.folding import GroupFolder, group_sort_key
from metering.store.rollups import DAY_US, HOUR_US, Split, bucket_start, split_range

__all__ = ["SeriesKey", "series_results", "series_split", "window_micros"]

#: (window start in microseconds, group values): the key a series folds under.
SeriesKey = tuple[int, tuple[str | None, ...]]

_WINDOW_MICROS: Mapping[Window, int] = {Window.HOUR: HOUR_US, Window.DAY: DAY_US}


def window_micros(window: Window) -> int:
    """The length of ``window`` in microseconds."""
    return _WINDOW_MICROS[window]


def _ceil(micros: int, grain: int) -> int:
    return -bucket_start(-micros, grain)


def _partial(low: int, high: int, grain: int) -> Split:
    """A range inside one window: hour rollups and raw edges for days, raw for hours."""
    if grain == HOUR_US:
        return Split((), ((low, high),))
    return split_range(low, high) or Split((), ((low, high),))


def series_split(from_us: int | None, to_us: int, grain: int) -> Split:
    """Cover ``[from_us, to_us]`` (inclusive; ``None`` = unbounded) for windows of ``grain``.

    Whole windows are one rollup range of ``grain``; the partial first and last windows are
    split further by :func:`_partial`. Every rollup bucket and raw range lies inside one window.
    """
    whole_from = None if from_us is None else _ceil(from_us, grain)
    whole_to = bucket_start(to_us + 1, grain)  # first window not wholly inside
    if from_us is not None and whole_from is not None and whole_from > whole_to:
        return _partial(from_us, to_us, grain)  # the range lies inside one window
    rollups: list[tuple[int, int | None, int]] = []
    raw: list[tuple[int, int]] = []
    if whole_from is None or whole_from < whole_to:
        rollups.append((grain, whole_from, whole_to))
    edges = []
    if from_us is not None and whole_from is not None and from_us < whole_from:
        edges.append((from_us, whole_from - 1))
    if whole_to <= to_us:
        edges.append((whole_to, to_us))
    for low, high in edges:
        part = _partial(low, high, grain)
        rollups.extend(part.rollups)
        raw.extend(part.raw)
    return Split(tuple(rollups), tuple(raw))


def series_results(folder: GroupFolder[SeriesKey]) -> list[WindowAggregate]:
    """The folder's (window, group) folds as windows ordered by start, groups by values."""
    windows: dict[int, list[GroupAggregate]] = {}
    for (start, values), fold in folder.items():
        windows.setdefault(start, []).append(fold.result(values))
    return [
        WindowAggregate(
            start=from_micros(start),
            groups=tuple(sorted(groups, key=lambda g: group_sort_key(g.values))),
        )
        for start, groups in sorted(windows.items())
    ]
