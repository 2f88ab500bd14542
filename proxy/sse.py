"""A sans-I/O reader of OpenAI SSE streams: usage, streamed text, and what the client gets.

``feed(bytes)`` takes upstream bytes split anywhere and returns the bytes to forward; it works
on whole SSE events (an event is what a client consumes, so waiting for its end adds nothing).
Rules (reference/openai-usage.md section 2): the last non-null ``usage`` wins, never a sum;
when the client did not ask for usage, the usage-only chunk (``usage`` set, ``choices: []``)
is dropped and a usage attached to a chunk with choices is removed; ``[DONE]`` is held back so
that the caller can commit the usage before the stream's last event goes out (so is the usage
chunk of a client that asked: the last one the upstream sent, once).

Cost: most events of a stream are content chunks without usage (``"usage": null`` or none).
Those are checked as JSON with a narrow decode that keeps only the streamed text and the usage,
and forwarded as the original bytes; a piece whose events all go out unchanged is forwarded as
one slice. Only chunks with a usage, and Responses events, are decoded whole.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.usage import TokenUsage, usage_from_object

__all__ = ["SSEReader"]

_DONE = b"[DONE]"
# The Responses API ends with one of these instead of [DONE]; held back the same way.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    text: str | None = None


class _Chunk(msgspec.Struct):
    """The streamed text and usage of a chat or completions chunk; the rest is skipped."""

    choices: list[_Choice] | None = None
    usage: Any = None


_CHUNK = msgspec.json.Decoder(_Chunk)


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
        buffer = self._buffer + data if self._buffer else data
        crlf = b"\r" in buffer
        out: list[bytes] = []
        start = pos = 0  # out holds buffer[start:pos] implicitly while nothing changes
        while True:
            if crlf:
                end, sep = _event_end(buffer, pos)
            else:
                end, sep = buffer.find(b"\n\n", pos), 2
            if end < 0:
                break
            replaced = self._event(buffer[pos : end + sep], buffer[pos:end])
            if replaced is not None:
                out.append(buffer[start:pos])
                if replaced:
                    out.append(replaced)
                start = end + sep
            pos = end + sep
        self._buffer = buffer[pos:]
        if not out:
            return buffer[start:pos]
        out.append(buffer[start:pos])
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

    def _event(self, event: bytes, body: bytes) -> bytes | None:
        """What replaces ``event`` for the client: None to forward it as is, b"" to drop it."""
        if body.startswith(b"data:") and b"\n" not in body and b"\r" not in body:
            data: bytes | None = body[5:].removeprefix(b" ")
        else:
            data = _data_of(event)
        if data is None:
            return None  # comments, event: lines without data, keep-alives
        if data.strip() == _DONE:
            self.done = True
            self._held += event
            return b""
        if b'"response' not in data:
            try:
                chunk = _CHUNK.decode(data)
            except msgspec.ValidationError:
                pass  # not a plain chunk: read it whole below
            except msgspec.DecodeError:
                # A garbage data line would break the client's SDK mid-stream: drop it.
                self.malformed += 1
                return b""
            else:
                if chunk.usage is not None:
                    return self._document(event, data)  # it may have to change
                for choice in chunk.choices or ():
                    delta = choice.delta
                    text = delta.content if delta is not None else choice.text
                    if text is not None:
                        self._texts.setdefault(choice.index, []).append(text)
                return None
        return self._document(event, data)

    def _document(self, event: bytes, data: bytes) -> bytes | None:
        try:
            document = msgspec.json.decode(data)
        except msgspec.DecodeError:
            self.malformed += 1
            return b""
        if not isinstance(document, dict):
            return None
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
        return None

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


def _event_end(buffer: bytes, start: int) -> tuple[int, int]:
    """Index and length of the first event separator (a blank line) from ``start``, or (-1, 0)."""
    best, size = -1, 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        index = buffer.find(separator, start)
        if index >= 0 and (best < 0 or index < best):
            best, size = index, len(separator)
    return best, size


def _data_of(event: bytes) -> bytes | None:
    """The event's data (multi-line ``data:`` fields joined by newlines), or None."""
    lines = [line for line in event.splitlines() if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[5:].removeprefix(b" ") for line in lines)
