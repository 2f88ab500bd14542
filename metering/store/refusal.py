"""Telling a batch that a store cannot hold from a store that cannot write.

A value can be refused on its way in (a lone surrogate cannot be encoded as UTF-8, an integer
of thousands of digits cannot be turned into text) or by the database itself (PostgreSQL's
text refuses NUL, its ``numeric`` a number beyond ~1e131072). Either is the batch's fault and
surfaces as :class:`~metering.errors.RecordRefused`, so the writer can refuse that batch alone
and commit the others (:mod:`metering.writer`); operational failures keep their own mapping
to :class:`~metering.errors.StoreUnavailable`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import Literal

from metering.errors import RecordRefused

__all__ = ["VALUE_ERRORS", "refused_on"]

#: Python's own failures to encode a value for a store: ``UnicodeEncodeError`` (lone
#: surrogates), ``ValueError`` (integers past the text conversion limit), ``OverflowError``
#: and ``decimal``'s signals (numbers beyond a column or a context).
VALUE_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError)


class _RefusedOn:
    """The context manager :func:`refused_on` returns (a class: it wraps every store write,
    and a generator-based one costs several times as much to enter and leave)."""

    __slots__ = ("_errors",)

    def __init__(self, errors: tuple[type[Exception], ...]) -> None:
        self._errors = errors

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, self._errors):
            raise RecordRefused(f"{type(exc).__name__}: {exc}") from exc
        return False


def refused_on(errors: tuple[type[Exception], ...]) -> AbstractContextManager[None]:
    """Turn ``errors`` raised inside into :class:`~metering.errors.RecordRefused`.

    Use it inside the adapter's operational mapping, around the write alone: the database's
    data errors are subclasses of its general error class on some drivers (sqlite3).
    """
    return _RefusedOn(errors)
