"""``tallygate demo`` and ``serve`` as a user runs them: real processes on loopback."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from config import load_settings
from proxy.app import create_app
from proxy.background import BackgroundServer, bind_socket
from tests.proxy.conftest import Gateway

KEY = re.compile(r"Bearer (tg-[A-Za-z0-9_-]+)")


def free_port() -> int:
    with bind_socket("127.0.0.1", 0) as sock:
        port: int = sock.getsockname()[1]
    return port


def wait_healthy(url: str, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process exited early"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("not healthy in time")


def test_demo_answers_curl_and_sdk_and_usage_matches(tmp_path: Path) -> None:
    port = free_port()
    script = Path(sys.executable).with_name("tallygate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLYGATE_")}
    process = subprocess.Popen(
        [str(script), "demo", "--port", str(port), "--db", str(tmp_path / "demo.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        printed = ""
        while "Press Ctrl+C" not in printed:
            line = process.stdout.readline()
            assert line, f"demo ended early:\n{printed}"
            printed += line
        match = KEY.search(printed)
        assert match is not None
        key = match.group(1)
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process)
        # The printed curl, run as printed.
        curl = printed[
            printed.index("curl -s") : printed.index("curl -s", printed.index("curl -s") + 1)
        ]
        result = subprocess.run(
            ["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=True
        )
        curl_usage = httpx.Response(200, content=result.stdout).json()["usage"]
        with openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as client:
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello there"}]
            )
        assert reply.usage is not None
        usage = httpx.get(f"{base}/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
        rows = {(r["model"], r["type"]): r["tokens"] for r in usage["key_usage"]["breakdown"]}
        assert rows == {
            ("gpt-4o-mini", "input"): curl_usage["prompt_tokens"] + reply.usage.prompt_tokens,
            ("gpt-4o-mini", "output"): curl_usage["completion_tokens"]
            + reply.usage.completion_tokens,
        }
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0


def test_serve_without_upstream_key_starts_and_names_the_variable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(env={"TALLYGATE_STORE__URL": f"sqlite:///{tmp_path / 't.db'}"})
    with (
        caplog.at_level(logging.WARNING, logger="tallygate"),
        BackgroundServer(create_app(settings), lifespan="on") as server,
    ):
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        key = Gateway(server, settings).new_key("nokey")
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "upstream_not_configured"
    assert "OPENAI_API_KEY" in error["message"]
    assert any("OPENAI_API_KEY" in record.getMessage() for record in caplog.records)
