"""Page arithmetic shared by the adapters."""

from __future__ import annotations

__all__ = ["page_offset"]


def page_offset(page: int, per_page: int) -> int:
    """Rows to skip for 1-based ``page`` of ``per_page`` rows; both must be at least 1."""
    if page < 1 or per_page < 1:
        # The API layer validates paging; reaching here with bad values is a caller bug.
        raise ValueError(f"page and per_page must be >= 1 (got {page}, {per_page})")
    return (page - 1) * per_page
