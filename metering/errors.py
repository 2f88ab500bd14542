"""Error categories of the metering core.

They carry no HTTP: the edge (``proxy.errors``) maps each category to a status code and an
envelope in one table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Conflict",
    "IssueMap",
    "Issues",
    "MeteringError",
    "NotAllowed",
    "NotFound",
    "RecordRefused",
    "StoreBroken",
    "StoreUnavailable",
    "ValidationFailed",
    "add_issue",
]

#: Every problem found in one input, Lago-style: field (or nested index) -> list of codes.
Issues = Mapping[str, "Sequence[str] | Issues"]

#: The mutable form validators fill in (codes per field, or nested maps per index).
IssueMap = dict[str, Any]


def add_issue(issues: IssueMap, field: str, code: str) -> None:
    """Record ``code`` for ``field``, keeping the codes found before it."""
    issues.setdefault(field, []).append(code)


class MeteringError(Exception):
    """Base of every error the core raises on purpose."""


class NotFound(MeteringError):
    """A referenced resource does not exist.

    ``resource`` is Lago's singular name (``customer``, ``plan``, ``billable_metric``...).
    """

    def __init__(self, resource: str, code: str | None = None) -> None:
        self.resource = resource
        # Lago's codes are mostly "<resource>_not_found"; a few differ (billable_metrics_not_found).
        self.code = code or f"{resource}_not_found"
        super().__init__(self.code)


class Conflict(MeteringError):
    """The request is well formed but clashes with stored state (Lago answers 422 for these)."""

    def __init__(self, issues: Issues) -> None:
        self.issues = issues
        super().__init__(str(dict(issues)))


class ValidationFailed(MeteringError):
    """An input broke one or more rules; ``issues`` lists every one of them at once."""

    def __init__(self, issues: Issues) -> None:
        self.issues = issues
        super().__init__(str(dict(issues)))


class NotAllowed(MeteringError):
    """The operation is not allowed in the resource's current state (``no_active_subscription``)."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


class StoreUnavailable(MeteringError):
    """The store cannot take writes right now (stalled, locked or full); callers may retry."""


class StoreBroken(StoreUnavailable):
    """The store cannot be used until an operator acts: its file is damaged, deleted or
    replaced, or it cannot be opened as configured (missing directory, refused credentials,
    no schema). The message says what is wrong and what to do. Retrying does not help; the
    callers' answer is the same as for :class:`StoreUnavailable`.
    """


class RecordRefused(MeteringError):
    """The store refused a batch for a value it cannot hold (a NUL in text, a number beyond its
    numeric type, an unencodable string). Retrying will not help; other batches are unaffected.

    ``reason`` is the store's complaint as its driver worded it.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
