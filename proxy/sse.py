"""A sans-I/O reader of OpenAI SSE streams: usage, streamed text, and what the client gets.

``feed(bytes)`` takes upstream bytes split anywhere and returns the bytes to forward; it works
on whole SSE events (an event is what a client consumes, so waiting for its end adds nothing).
Rules (reference/openai-usage.md section 2): the last non-null ``usage`` wins, never a sum;
when the client did not ask for usage, the usage-only chunk (``usage`` set, ``choices: []``)
is dropped and a usage attached to a chunk with choices is removed; ``[DONE]`` is held back so
that the caller can commit the usage before the stream's last event goes out (so is the usage
chunk of a client that asked: the last one the upstream sent, once).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.usage import TokenUsage, usage_from_object

__all__ = ["SSEReader"]

_DONE = b"[DONE]"
# The Responses API ends with one of these instead of [DONE]; held back the same way.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class SSEReader:
    """Reads one upstream event stream; see the module docstring."""

    def __init__(self, *, strip_usage: bool) -> None:
        self._strip = strip_usage
        self._buffer = b""
        self._usage: dict[str, Any] | None = None
        self._texts: dict[int, list[str]] = {}
        self._held: bytes = b""
        self._usage_chunk = b""
        self.done = False
        self.malformed = 0

    def feed(self, data: bytes) -> bytes:
        """Bytes to forward now for this piece of upstream stream."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            end, sep = _event_end(self._buffer)
            if end < 0:
                break
            event = self._buffer[: end + sep]
            self._buffer = self._buffer[end + sep :]
            forwarded = self._event(event)
            if forwarded:
                out.append(forwarded)
        return b"".join(out)

    def tail(self) -> bytes:
        """What is left to send once usage is committed: ``[DONE]`` and any partial event."""
        rest = self._usage_chunk + self._held + self._buffer
        self._usage_chunk, self._held, self._buffer = b"", b"", b""
        return rest

    def usage(self) -> TokenUsage | None:
        """The last non-null usage the upstream sent, if any."""
        return usage_from_object(self._usage)

    def texts(self) -> list[str]:
        """Streamed text per choice (concatenated), for the tiktoken fallback."""
        return ["".join(parts) for _, parts in sorted(self._texts.items())]

    def _event(self, event: bytes) -> bytes:
        data = _data_of(event)
        if data is None:
            return event  # comments, event: lines without data, keep-alives
        if data.strip() == _DONE:
            self.done = True
            self._held += event
            return b""
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            # A garbage data line would break the client's SDK mid-stream: count it, drop it.
            self.malformed += 1
            return b""
        if not isinstance(document, dict):
            return event
        self._collect(document)
        if document.get("type") in _TERMINAL:
            self.done = True
            self._held += event
            return b""
        usage = document.get("usage")
        if usage is not None:
            self._usage = usage
            usage_only = document.get("choices") == []
            if self._strip:
                if usage_only:
                    return b""
                del document["usage"]
                return b"data: " + msgspec.json.encode(document) + b"\n\n"
            if usage_only:
                # A client that asked gets exactly one usage chunk, even from an upstream
                # that repeats it: the last one, whose numbers are the ones metered. It goes
                # out with the tail, once the usage is committed.
                self._usage_chunk = event
                return b""
        return event

    def _collect(self, document: dict[str, Any]) -> None:
        # Chat chunks carry choices[].delta.content, legacy completions choices[].text,
        # Responses streams response.output_text.delta events with "delta".
        choices = document.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str) and isinstance(index, int):
                    self._texts.setdefault(index, []).append(text)
        elif document.get("type") == "response.output_text.delta":
            delta = document.get("delta")
            if isinstance(delta, str):
                self._texts.setdefault(0, []).append(delta)
        response = document.get("response")
        if isinstance(response, dict) and response.get("usage") is not None:
            self._usage = response["usage"]


def _event_end(buffer: bytes) -> tuple[int, int]:
    """Index and length of the first event separator (a blank line), or (-1, 0)."""
    best, size = -1, 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        index = buffer.find(separator)
        if index >= 0 and (best < 0 or index < best):
            best, size = index, len(separator)
    return best, size


def _data_of(event: bytes) -> bytes | None:
    """The event's data (multi-line ``data:`` fields joined by newlines), or None."""
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[5:].removeprefix(b" ") for line in lines)
