"""Which tiktoken encoding a model name uses, following tiktoken 0.14's own tables.

The tables are tiktoken's (``tiktoken.model.MODEL_TO_ENCODING`` and ``MODEL_PREFIX_TO_ENCODING``),
read at call time, so a tiktoken upgrade that learns new models is picked up without code here.
What this module adds (reference/openai-usage.md section 3.1):

- names are normalised first: surrounding whitespace and case, provider prefixes
  (``openai/gpt-4o``, ``azure/…``, ``openrouter/openai/…``), and Azure-style names that drop the
  dash after ``gpt`` (``gpt4o-mini`` → ``gpt-4o-mini``, ``gpt35-turbo`` → ``gpt-35-turbo``);
- an operator override (model → encoding) wins over everything;
- unknown names get ``o200k_base`` (every current OpenAI model uses it) and ``exact=False``;
- encodings not shipped offline (``p50k_*``, ``r50k_base``, ``gpt2``) become ``cl100k_base`` with
  ``exact=False``: those models are long deprecated and a close count beats none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from tiktoken.model import MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING

from proxy.tokens.encodings import OFFLINE_ENCODINGS

__all__ = [
    "DEFAULT_ENCODING",
    "KNOWN_ENCODINGS",
    "SUBSTITUTE_ENCODING",
    "EncodingChoice",
    "normalize_model",
    "offline_encoding",
    "resolve_encoding",
]

#: The guess for model names no table knows.
DEFAULT_ENCODING = "o200k_base"
#: What stands in for an encoding that is not shipped offline.
SUBSTITUTE_ENCODING = "cl100k_base"
#: Every encoding name tiktoken 0.14 knows; anything else in an override is a config error.
KNOWN_ENCODINGS = frozenset(
    {"gpt2", "r50k_base", "p50k_base", "p50k_edit", "cl100k_base", "o200k_base", "o200k_harmony"}
)

# "gpt4o", "gpt35-turbo", "gpt4.1": Azure deployments often drop the dash that OpenAI ids have.
_DASHLESS_GPT = re.compile(r"^gpt(?=\d)")


class EncodingChoice(NamedTuple):
    """The encoding to count with, and whether it is known to be the model's (``exact``)."""

    name: str
    exact: bool


def normalize_model(model: str) -> str:
    """The bare OpenAI-style model id inside ``model`` (see the module docstring)."""
    name = model.strip().lower()
    # Provider routing prefixes: keep the last path segment ("openrouter/openai/gpt-4o").
    # Fine-tuned ids ("ft:gpt-4o:org::id") contain colons, never slashes, so they survive.
    name = name.rsplit("/", 1)[-1]
    return _DASHLESS_GPT.sub("gpt-", name)


def offline_encoding(name: str) -> EncodingChoice:
    """``name`` itself if it can be built offline, else the substitute with ``exact=False``.

    Raises ``ValueError`` for names tiktoken does not know at all.
    """
    if name in OFFLINE_ENCODINGS:
        return EncodingChoice(name, True)
    if name in KNOWN_ENCODINGS:
        return EncodingChoice(SUBSTITUTE_ENCODING, False)
    raise ValueError(
        f"unknown tiktoken encoding {name!r}; expected one of {sorted(KNOWN_ENCODINGS)}"
    )


def _table_lookup(name: str) -> str | None:
    # The same order as tiktoken.model.encoding_name_for_model: exact names, then prefixes in
    # insertion order (first match wins, e.g. "gpt-4o-" before "gpt-4-").
    if name in MODEL_TO_ENCODING:
        return MODEL_TO_ENCODING[name]
    for prefix, encoding in MODEL_PREFIX_TO_ENCODING.items():
        if name.startswith(prefix):
            return encoding
    return None


def resolve_encoding(model: str, overrides: Mapping[str, str] | None = None) -> EncodingChoice:
    """The offline encoding for ``model`` and whether the mapping is exact.

    ``overrides`` maps model names (as the client sends them, or normalised) to tiktoken encoding
    names. Never raises for a model name; raises ``ValueError`` only for an override that names an
    unknown encoding.
    """
    normalized = normalize_model(model)
    if overrides:
        for key in (model, normalized):
            if key in overrides:
                return offline_encoding(overrides[key])
    encoding = _table_lookup(normalized)
    if encoding is None:
        return EncodingChoice(DEFAULT_ENCODING, False)
    if encoding not in KNOWN_ENCODINGS:
        # A future tiktoken table naming an encoding this module has never heard of.
        return EncodingChoice(DEFAULT_ENCODING, False)
    return offline_encoding(encoding)
