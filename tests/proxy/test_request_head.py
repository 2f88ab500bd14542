"""Request bodies: the fields the gateway reads, and the one it injects into streams."""

from __future__ import annotations

import msgspec
import pytest

from proxy.request_head import parse_head, with_stream_usage


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "}"}]}',
        b'{"model":"m","stream":true}\n',
        b' {\n  "model": "m",\n  "stream": true\n}\r\n',
        b'{"model": "m", "stream": true, "stream_options": {"include_obfuscation": false}}',
        b'{"model": "m", "stream": true, "stream_options": null}',
        b'{"model": "m", "stream": true, "stream_options": {"include_usage": false}}',
    ],
)
def test_include_usage_is_set_and_everything_else_kept(body: bytes) -> None:
    parse_head(body)  # what the gateway checks before it injects
    original = msgspec.json.decode(body)
    injected = msgspec.json.decode(with_stream_usage(body))
    options = original.get("stream_options") or {}
    assert injected == {**original, "stream_options": {**options, "include_usage": True}}
    assert list(injected)[: len(original)] == list(original)  # fields keep their order
