"""One ``TokenCounter`` for the directory: loading o200k takes about half a second."""

from __future__ import annotations

import pytest

from proxy.tokens import TokenCounter


@pytest.fixture(scope="session")
def counter() -> TokenCounter:
    """A counter with no overrides, shared (it is stateless apart from its encoding cache)."""
    return TokenCounter()
