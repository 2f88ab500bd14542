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
one slice. Only chunks with a usage, tool calls or a refusal, and Responses events, are decoded
whole. The generated output kept for an estimate is the text of each choice and each function
call's name and arguments (chat ``tool_calls`` deltas, Responses ``function_call`` items).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.usage import TokenUsage, usage_from_object

__all__ = ["SSEReader"]

_DONE = b"[DONE]"
# The Responses API ends with one of these instead of [DONE]; held back the same way.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_OUTPUT_ITEM = frozenset({"response.output_item.added", "response.output_item.done"})


class _Delta(msgspec.Struct):
    content: str | None = None
    # Rare: a chunk with any of these is read whole (see SSEReader._collect).
    refusal: Any = None
    tool_calls: Any = None
    function_call: Any = None


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
        # (choice, tool call index) or (-1, Responses output index) -> name and argument pieces
        self._calls: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
        self._held: bytes = b""
        self._usage_chunk = b""
        self._sequence: int | None = None  # the last Responses event's sequence_number
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

    def broken_tail(self, error: dict[str, Any], *, typed: bool) -> bytes:
        """What ends a stream the upstream broke off: the usage chunk held for a client that
        asked (if one came), then an error event for ``error`` (OpenAI's error object).
        A partial event left in the buffer is dropped: half an event would break a client.

        Chat and completions streams get ``data: {"error": {...}}``, the shape OpenAI's SDKs
        raise as ``APIError``; a ``typed`` (Responses) stream gets an ``error`` event with the
        documented fields, numbered after the last event, and the same ``error`` object.
        """
        if typed:
            sequence = -1 if self._sequence is None else self._sequence
            document = {
                "type": "error",
                "code": error.get("code"),
                "message": error.get("message"),
                "param": error.get("param"),
                "sequence_number": sequence + 1,
                "error": error,
            }
            event = b"event: error\ndata: " + msgspec.json.encode(document) + b"\n\n"
        else:
            event = b"data: " + msgspec.json.encode({"error": error}) + b"\n\n"
        rest = self._usage_chunk + event
        self._usage_chunk, self._held, self._buffer = b"", b"", b""
        return rest

    def usage(self) -> TokenUsage | None:
        """The last non-null usage the upstream sent, if any."""
        return usage_from_object(self._usage)

    def texts(self) -> list[str]:
        """What the model generated, for the tiktoken fallback: the streamed text of each
        choice, then each function call's name and arguments (each concatenated: arguments
        arrive in pieces across chunks, and BPE merges across those boundaries)."""
        texts = ["".join(parts) for _, parts in sorted(self._texts.items())]
        for _, (names, arguments) in sorted(self._calls.items()):
            texts += ("".join(names), "".join(arguments))
        return texts

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
                if _generates_more_than_content(chunk):
                    return self._document(event, data)
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
        sequence = document.get("sequence_number")
        if isinstance(sequence, int):
            self._sequence = sequence
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
                if not isinstance(index, int):
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    self._chat_delta(index, delta)
                elif isinstance(choice.get("text"), str):
                    self._texts.setdefault(index, []).append(choice["text"])
        else:
            self._responses_event(document)
        response = document.get("response")
        if isinstance(response, dict) and response.get("usage") is not None:
            self._usage = response["usage"]

    def _chat_delta(self, choice: int, delta: dict[str, Any]) -> None:
        for text in (delta.get("content"), delta.get("refusal")):
            if isinstance(text, str):
                self._texts.setdefault(choice, []).append(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            index = call.get("index", 0) if isinstance(call, dict) else None
            if isinstance(index, int):
                self._call_piece((choice, index), call.get("function"))
        self._call_piece((choice, -1), delta.get("function_call"))  # the legacy form

    def _responses_event(self, document: dict[str, Any]) -> None:
        kind, index = document.get("type"), document.get("output_index")
        if kind == "response.output_text.delta":
            delta = document.get("delta")
            if isinstance(delta, str):
                self._texts.setdefault(0, []).append(delta)
        elif kind == "response.function_call_arguments.delta" and isinstance(index, int):
            self._call_piece((-1, index), {"arguments": document.get("delta")})
        elif kind in _OUTPUT_ITEM and isinstance(index, int):
            item = document.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                if kind == "response.output_item.done":
                    self._calls.pop((-1, index), None)  # the whole call replaces its pieces
                self._call_piece((-1, index), item)

    def _call_piece(self, key: tuple[int, int], function: object) -> None:
        """Add a piece of a function call: its name and/or a piece of its arguments."""
        if not isinstance(function, dict):
            return
        names, arguments = self._calls.setdefault(key, ([], []))
        name, more = function.get("name"), function.get("arguments")
        if isinstance(name, str):
            names.append(name)
        if isinstance(more, str):
            arguments.append(more)


def _generates_more_than_content(chunk: _Chunk) -> bool:
    """Whether a chunk carries generated output besides ``content`` (tool calls, refusals)."""
    for choice in chunk.choices or ():
        delta = choice.delta
        if delta is not None and (
            delta.tool_calls is not None
            or delta.function_call is not None
            or delta.refusal is not None
        ):
            return True
    return False


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
