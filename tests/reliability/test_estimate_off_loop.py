"""Estimating a huge request's tokens never holds up other clients: while the gateway counts a
15 MiB request of a million tiny messages (its upstream reported no usage), a small request
sent after the count began is answered and metered before the count ends."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec

from proxy.app import create_app, sqlite_path
from proxy.background import BackgroundServer
from proxy.tokens import TokenCounter
from tests.proxy.test_fidelity import mock_settings
from tests.reliability.conftest import LocalGateway

BIG_BYTES = 15 * 1024 * 1024
REPLY = {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}
USAGE = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


class _Upstream:
    """Answers at once; the big request without usage (so the gateway counts it), the small
    one with its usage. ``counting`` is set once the big request has been answered."""

    def __init__(self) -> None:
        self.counting = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        big = len(request.content) > 1024 * 1024
        reply = REPLY if big else {**REPLY, "usage": USAGE}
        response = httpx.Response(200, json=reply)
        if big:
            self.counting.set()
        return response


def _commit_order(db: Path) -> list[str]:
    """Request ids in the order their usage events were stored."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute("SELECT transaction_id FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()
    order: list[str] = []
    for (transaction_id,) in rows:
        request_id = transaction_id.rsplit(":", 1)[0]
        if request_id not in order:
            order.append(request_id)
    return order


def _stored_input(db: Path, request_id: str) -> tuple[int, str]:
    """Input tokens stored for a request, and where they came from."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        (properties,) = conn.execute(
            "SELECT properties FROM events WHERE transaction_id = ?", (f"{request_id}:input",)
        ).fetchone()
    finally:
        conn.close()
    stored = msgspec.json.decode(properties)
    return int(stored["tokens"]), stored["usage_source"]


def test_a_small_request_is_served_while_a_huge_one_is_counted(tmp_path: Path) -> None:
    settings = mock_settings(tmp_path)
    upstream = _Upstream()
    # Messages without text: the count is per-message overhead alone, a million times over.
    tiny = b'{"content":null},'
    count = (BIG_BYTES - 100) // len(tiny)
    big_body = b'{"model":"gpt-4o","messages":[' + tiny * (count - 1) + tiny[:-1] + b"]}"
    small_body = msgspec.json.encode(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    )
    # As ``tallygate serve`` does: encodings loaded at start-up, not at the first count.
    app = create_app(settings, transport=httpx.MockTransport(upstream), preload_tokenizers=True)
    with BackgroundServer(app, lifespan="on") as server, ThreadPoolExecutor(1) as pool:
        key = LocalGateway(server, settings).new_key()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        url = f"{server.url}/v1/chat/completions"
        big = pool.submit(httpx.post, url, content=big_body, headers=headers, timeout=300)
        assert upstream.counting.wait(120), big.exception(0) if big.done() else "no upstream call"
        small = httpx.post(url, content=small_body, headers=headers, timeout=120)
        assert small.status_code == 200, small.text
        assert not big.done() or big.result().status_code == 200
        answered = big.result(300)
    assert answered.status_code == 200, answered.text
    # The small request's usage was stored first: it was served while the big one was counted.
    db = sqlite_path(settings.store.url)
    order = _commit_order(db)
    assert order == [small.headers["x-request-id"], answered.headers["x-request-id"]]
    # Counted in a thread, from a body decoded in pieces: the same count as in one go.
    messages = msgspec.json.decode(big_body)["messages"]
    expected = TokenCounter().count_chat_prompt(messages, "gpt-4o")
    assert _stored_input(db, answered.headers["x-request-id"]) == (expected, "estimated")
