"""One metered upstream call: who asked, for which route, and how its usage is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from metering.errors import RecordRefused, StoreUnavailable
from metering.models import ApiKey
from metering.ports import DuplicatePolicy, EventBatch
from proxy.ids import new_request_id
from proxy.state import Gateway
from proxy.surfaces import Surface
from proxy.tokens import DEFAULT_THREAD_THRESHOLD
from proxy.upstream import ROUTED_RESPONSE_HEADERS, Route
from proxy.usage import TokenUsage, usage_events

__all__ = ["MeteredCall"]

_ROUTED = tuple(prefix.encode() for prefix in ROUTED_RESPONSE_HEADERS)


@dataclass(slots=True)
class MeteredCall:
    """State of one proxied request, from routing to its committed usage events."""

    gateway: Gateway
    key: ApiKey
    route: Route
    surface: Surface
    body: bytes
    started: datetime
    request_id: str = field(default_factory=new_request_id)

    def response_headers(
        self, upstream: Iterable[tuple[bytes, bytes]], content_type: bytes
    ) -> list[tuple[bytes, bytes]]:
        """Headers for the client: the upstream's ids and rate-limit headers, its content type
        (``content_type`` if it sent none) and tallygate's own request id. Raw ASGI pairs."""
        headers = []
        for name, value in upstream:
            name = name.lower()
            if name.startswith(_ROUTED):
                headers.append((name, value))
            elif name == b"x-request-id":
                headers.append((b"x-upstream-request-id", value))
            elif name == b"content-type":
                content_type = value
        headers.append((b"content-type", content_type))
        headers.append((b"x-request-id", self.request_id.encode()))
        return headers

    async def record(self, usage: TokenUsage) -> None:
        """Commit the usage as events; returns once they are durable, or reported as unwritten
        (a value the store refuses, or a store still failing at the shutdown deadline).

        A client that disconnects while this runs cancels the request, not the write (the
        writer keeps what was submitted), so generated tokens are billed even when nobody
        reads them.
        """
        events = usage_events(
            request_id=self.request_id,
            key=self.key,
            model=self.route.model,
            usage=usage,
            timestamp=self.started,
            created_at=self.gateway.clock(),
            settings=self.gateway.settings.metering,
        )
        if not events:
            return
        batch = EventBatch(events=events, policy=DuplicatePolicy.SKIP, origin=self.request_id)
        try:
            # No task or shield around this: submit queues the batch before its first await,
            # and a cancelled caller does not withdraw it.
            await self.gateway.writer.submit(batch, admitted=True)
        except (RecordRefused, StoreUnavailable):
            # Refused by the store (a bug of ours: the client is not to blame), or given up at
            # shutdown. The writer has logged the batch with this request's id and its events;
            # the client keeps the answer its tokens were spent on.
            return

    async def estimate(self, completion_texts: list[str]) -> TokenUsage:
        """The tiktoken fallback when the upstream reported no usage (flagged as estimated).

        Decoding and counting a request of up to 16 MiB takes seconds of CPU (a million tiny
        messages), so unless the request and answer are small, all of it runs in a worker
        thread: the event loop keeps serving everyone else meanwhile.
        """
        tokens = self.gateway.tokens
        size = len(self.body) + sum(len(text) for text in completion_texts)
        if size < DEFAULT_THREAD_THRESHOLD and tokens.is_loaded(self.route.model):
            return self._estimate(completion_texts)
        return await asyncio.to_thread(self._estimate, completion_texts)

    def _estimate(self, completion_texts: list[str]) -> TokenUsage:
        model = self.route.model
        tokens = self.gateway.tokens
        try:
            request_doc: Any = _decode_in_pieces(self.body)
        except RecursionError:
            # Nested just within parse_head's bound, past it here (deeper in the stack): the
            # body's text is the estimate (any structure adds at most its own characters).
            request_doc = None
            prompt = tokens.count_text(self.body.decode(errors="replace"), model)
        else:
            prompt = self.surface.prompt(tokens, request_doc, model)
        completion = tokens.count_completion(completion_texts, model)
        return TokenUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            source="estimated",
            estimate="lower_bound" if self.surface.hidden_input(request_doc) else None,
        )


_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
#: Arrays longer than this (bytes) are decoded _PIECE items per call.
_LONG_ARRAY = 64 * 1024
_PIECE = 1000


def _decode_in_pieces(body: bytes) -> Any:
    """``body``'s JSON document, decoded a field, or a thousand items of a long array, per call.

    One msgspec call holds the GIL until it returns: about 0.15 s for a 16 MiB body, during
    which the event loop's thread could not run even though the decoding is in another
    thread. In pieces, the loop gets the GIL back between them.
    """
    try:
        fields = _FIELDS.decode(body)
    except msgspec.ValidationError:  # valid JSON, but not an object (parse_head refused it)
        return msgspec.json.decode(body)
    document: dict[str, Any] = {}
    for name, raw in fields.items():
        view = memoryview(raw)
        if len(view) > _LONG_ARRAY and view[:1].tobytes() == b"[":
            items = _ITEMS.decode(raw)
            decoded: list[Any] = []
            for start in range(0, len(items), _PIECE):
                piece = b",".join(items[start : start + _PIECE])
                decoded.extend(msgspec.json.decode(b"[" + piece + b"]"))
            document[name] = decoded
        else:
            document[name] = msgspec.json.decode(raw)
    return document
