"""Shared pieces of the metering benchmarks: realistic gateway events, set-up and statistics.

Events look like the ones ``proxy.usage`` emits (``llm_tokens`` with ``model``, ``type``,
``tokens``, ``key_id``, ``usage_source``) over the default catalog's models and token types
(embedding models only have ``input``), a few keys, timestamps spread over a time range.
"""

from __future__ import annotations

import math
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

from config import Settings, load_settings
from metering.models import Event
from metering.ports import DuplicatePolicy, EventBatch, Store
from metering.service import MeteringService
from proxy.catalog import ensure_default_catalog, token_types

__all__ = [
    "CUSTOMER",
    "SUBSCRIPTION",
    "EventFactory",
    "Summary",
    "machine_info",
    "month_start",
    "percentile",
    "prepare_subscription",
    "settings",
]

CUSTOMER = "bench-customer"
SUBSCRIPTION = "bench-customer:llm_default"


def settings() -> Settings:
    """The gateway's default settings (no config file, no environment)."""
    return load_settings(env={})


def month_start(now: datetime) -> datetime:
    """Midnight UTC on the first day of ``now``'s month."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def prepare_subscription(store: Store, config: Settings, *, start: datetime) -> str:
    """Write the seed catalog and an active calendar subscription starting at ``start``."""
    await ensure_default_catalog(store, config, start)
    service = MeteringService(store)
    sub = await service.ensure_subscription(
        external_id=SUBSCRIPTION,
        external_customer_id=CUSTOMER,
        plan_code=config.metering.plan_code,
        now=start,
    )
    return sub.external_id


@dataclass(slots=True)
class EventFactory:
    """Deterministic stream of gateway-like events for one subscription.

    ``start``/``end`` bound the timestamps (uniform); ``key_ids`` are the keys events carry.
    """

    config: Settings
    subscription: str
    start: datetime
    end: datetime
    key_ids: Sequence[str]
    seed: int = 1
    prefix: str = "req"

    def _pairs(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for name, model in sorted(self.config.models.items()):
            for token_type in token_types(self.config):
                if model.kind == "embedding" and token_type != "input":
                    continue
                pairs.append((name, token_type))
        return pairs

    def events(self, count: int, *, first: int = 0) -> Iterator[Event]:
        """``count`` events numbered from ``first`` (transaction ids are unique by number)."""
        rng = random.Random(self.seed * 1_000_003 + first)
        pairs = self._pairs()
        m = self.config.metering
        span_us = max(1, int((self.end - self.start) / timedelta(microseconds=1)))
        created = datetime.now(UTC)
        for number in range(first, first + count):
            model, token_type = rng.choice(pairs)
            ts = self.start + timedelta(microseconds=rng.randrange(span_us))
            yield Event(
                id=str(uuid.uuid4()),
                transaction_id=f"{self.prefix}-{number}:{token_type}",
                external_subscription_id=self.subscription,
                code=m.metric_code,
                timestamp=ts,
                created_at=created,
                properties={
                    m.model_property: model,
                    m.type_property: token_type,
                    m.field_name: rng.randint(1, 4000),
                    "key_id": rng.choice(self.key_ids),
                    "usage_source": "upstream" if rng.random() < 0.95 else "estimated",
                },
            )

    def batches(self, count: int, size: int, *, first: int = 0) -> list[EventBatch]:
        """``count`` batches of ``size`` events (Lago REJECT semantics, as the batch API)."""
        return [
            EventBatch(
                events=tuple(self.events(size, first=first + i * size)),
                policy=DuplicatePolicy.REJECT,
            )
            for i in range(count)
        ]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest-rank."""
    ordered = sorted(values)
    rank = math.ceil(round(q * len(ordered), 9))
    return ordered[min(len(ordered), max(1, rank)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Median, min and max of repeated measurements."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarise ``values`` (at least one)."""
        return cls(statistics.median(values), min(values), max(values))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """What the numbers were measured on (nproc, CPU, Python, SQLite, key packages)."""
    info = {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }
    for package in ("aiosqlite", "msgspec", "litestar", "uvicorn", "httpx"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "absent"
    return info
