"""Model → encoding: tiktoken 0.14's tables, normalisation, overrides and defaults."""

from __future__ import annotations

import pytest
from tiktoken.model import MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING

from proxy.tokens import TokenCounter, normalize_model


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        # exact names (MODEL_TO_ENCODING)
        ("gpt-4o", "o200k_base", True),
        ("gpt-4.1", "o200k_base", True),
        ("gpt-5", "o200k_base", True),
        ("o1", "o200k_base", True),
        ("o3", "o200k_base", True),
        ("o4-mini", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-3.5-turbo", "cl100k_base", True),
        ("gpt-3.5", "cl100k_base", True),
        ("gpt-35-turbo", "cl100k_base", True),
        ("davinci-002", "cl100k_base", True),
        ("text-embedding-3-small", "cl100k_base", True),
        ("text-embedding-3-large", "cl100k_base", True),
        ("text-embedding-ada-002", "cl100k_base", True),
        # prefixes (MODEL_PREFIX_TO_ENCODING), first match wins
        ("gpt-4o-mini", "o200k_base", True),
        ("gpt-4o-2024-08-06", "o200k_base", True),
        ("chatgpt-4o-latest", "o200k_base", True),
        ("gpt-4.1-nano", "o200k_base", True),
        ("gpt-4.5-preview", "o200k_base", True),
        ("gpt-5-mini", "o200k_base", True),
        ("gpt-5.1", "o200k_base", True),
        ("o1-mini", "o200k_base", True),
        ("o3-mini-2025-01-31", "o200k_base", True),
        ("o4-mini-2025-04-16", "o200k_base", True),
        ("gpt-4-turbo", "cl100k_base", True),
        ("gpt-4-0613", "cl100k_base", True),
        ("gpt-4-32k", "cl100k_base", True),
        ("gpt-3.5-turbo-0125", "cl100k_base", True),
        ("gpt-35-turbo-16k", "cl100k_base", True),
        ("gpt-oss-120b", "o200k_harmony", True),
        ("gpt-oss-20b", "o200k_harmony", True),
        ("ft:gpt-4o-mini-2024-07-18:org::abc123", "o200k_base", True),
        ("ft:gpt-4-0613:org::abc", "cl100k_base", True),
        ("ft:gpt-3.5-turbo-0125:org::abc", "cl100k_base", True),
        ("ft:davinci-002:org::abc", "cl100k_base", True),
        # deprecated encodings are not shipped offline: cl100k stands in, flagged
        ("text-davinci-003", "cl100k_base", False),
        ("code-davinci-002", "cl100k_base", False),
        ("text-davinci-edit-001", "cl100k_base", False),
        ("davinci", "cl100k_base", False),
        ("text-similarity-ada-001", "cl100k_base", False),
        ("gpt2", "cl100k_base", False),
        ("gpt-2", "cl100k_base", False),
        # normalised names
        ("openai/gpt-4o", "o200k_base", True),
        ("azure/gpt-35-turbo", "cl100k_base", True),
        ("openrouter/openai/gpt-4.1-mini", "o200k_base", True),
        ("  GPT-4o-Mini ", "o200k_base", True),
        ("gpt4o", "o200k_base", True),
        ("gpt35-turbo", "cl100k_base", True),
        ("openai/gpt-oss-120b", "o200k_harmony", True),
        # unknown: the modern default, flagged
        ("claude-3-5-sonnet", "o200k_base", False),
        ("my-azure-deployment", "o200k_base", False),
        ("", "o200k_base", False),
    ],
)
def test_model_table(counter: TokenCounter, model: str, encoding: str, exact: bool) -> None:
    assert counter.encoding_name_for(model) == (encoding, exact)


def test_every_tiktoken_table_entry_resolves(counter: TokenCounter) -> None:
    offline = {"cl100k_base", "o200k_base", "o200k_harmony"}
    for model, encoding in MODEL_TO_ENCODING.items():
        choice = counter.encoding_name_for(model)
        expected = (encoding, True) if encoding in offline else ("cl100k_base", False)
        assert choice == expected, model
    for prefix, encoding in MODEL_PREFIX_TO_ENCODING.items():
        if encoding in offline:
            # The prefix plus a suffix must land on the same encoding unless an exact name or an
            # earlier prefix claims it (tiktoken's own precedence).
            assert counter.encoding_name_for(prefix + "x-2099").exact, prefix


def test_normalize_model() -> None:
    assert normalize_model("OpenAI/GPT-4o") == "gpt-4o"
    assert normalize_model("gpt4.1-mini") == "gpt-4.1-mini"
    assert normalize_model("ft:gpt-4o:org:custom:id") == "ft:gpt-4o:org:custom:id"


def test_overrides_win_and_match_raw_or_normalised_names() -> None:
    counter = TokenCounter(
        {"my-azure-deployment": "cl100k_base", "gpt-4o": "cl100k_base", "legacy": "p50k_base"}
    )
    assert counter.encoding_name_for("my-azure-deployment") == ("cl100k_base", True)
    assert counter.encoding_name_for("openai/gpt-4o") == ("cl100k_base", True)
    assert counter.encoding_name_for("legacy") == ("cl100k_base", False)
    assert counter.encoding_name_for("gpt-4o-mini") == ("o200k_base", True)


def test_an_unknown_override_encoding_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown tiktoken encoding 'o300k_base'"):
        TokenCounter({"gpt-9": "o300k_base"})
