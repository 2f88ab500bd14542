"""One metered upstream call: who asked, for which route, and how its usage is recorded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from metering.models import ApiKey
from metering.ports import DuplicatePolicy, EventBatch
from proxy.ids import new_request_id
from proxy.state import Gateway
from proxy.surfaces import Surface
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
        """Commit the usage as events; returns once they are durable.

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
        # No task or shield around this: submit queues the batch before its first await, and
        # a cancelled caller does not withdraw it.
        await self.gateway.writer.submit(
            EventBatch(events=events, policy=DuplicatePolicy.SKIP), admitted=True
        )

    async def estimate(self, completion_texts: list[str]) -> TokenUsage:
        """The tiktoken fallback when the upstream reported no usage (flagged as estimated)."""
        request_doc: Any = msgspec.json.decode(self.body)
        model = self.route.model
        tokens = self.gateway.tokens
        prompt = await self.surface.prompt(tokens, request_doc, model)
        completion = await tokens.acount_completion(completion_texts, model)
        return TokenUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            source="estimated",
            estimate="lower_bound" if self.surface.hidden_input(request_doc) else None,
        )
