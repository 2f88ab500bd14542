"""The ``tallygate`` command line, run in-process and as the installed console script."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.cli import main
from tests.proxy.conftest import Gateway

KEY = re.compile(r"api key:\s+(tg-[A-Za-z0-9_-]+)")


def config_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "tallygate.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    return path


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(config_file(tmp_path, tmp_path / "keys.db"))
    assert main(["--config", cfg, "keys", "create", "--customer", "acme", "--name", "ci"]) == 0
    out = capsys.readouterr().out
    match = KEY.search(out)
    assert match is not None
    secret = match.group(1)
    key_id = re.search(r"key id:\s+(\S+)", out)
    assert key_id is not None
    assert "subscription:  acme:llm_default" in out

    assert main(["--config", cfg, "keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert secret[:10] in listing
    assert secret not in listing  # shown once, never again
    assert "active" in listing
    assert "ci" in listing

    assert main(["--config", cfg, "keys", "revoke", key_id.group(1)]) == 0
    assert "revoked" in capsys.readouterr().out
    main(["--config", cfg, "keys", "list"])
    assert "revoked" in capsys.readouterr().out
    assert main(["--config", cfg, "keys", "revoke", "key_missing"]) == 1
    assert "no key with id key_missing" in capsys.readouterr().err


def test_second_key_reuses_customer_and_subscription(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config_file(tmp_path, tmp_path / "keys.db"))
    main(["--config", cfg, "keys", "create", "--customer", "acme"])
    main(["--config", cfg, "keys", "create", "--customer", "acme", "--subscription", "acme-b"])
    main(["--config", cfg, "keys", "create", "--customer", "acme"])
    capsys.readouterr()
    main(["--config", cfg, "keys", "list"])
    listing = capsys.readouterr().out
    assert listing.count("acme:llm_default") == 2
    assert listing.count("acme-b") == 1


def test_unknown_plan_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(config_file(tmp_path, tmp_path / "keys.db"))
    assert main(["--config", cfg, "keys", "create", "--customer", "a", "--plan", "nope"]) == 1
    assert "plan 'nope' does not exist" in capsys.readouterr().err


def test_missing_store_directory_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config_file(tmp_path, tmp_path / "absent" / "keys.db"))
    assert main(["--config", cfg, "keys", "list"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_check_masks_secrets_and_lists_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "sk-very-secret" not in out
    assert '"OPENAI_API_KEY": "set"' in out
    assert "configuration OK" in out

    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "x"\n[metering]\ncurrency = 5\n')
    assert main(["config", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "server.port: expected int, found str 'x'" in err
    assert "metering.currency: expected str, found int 5" in err
    assert "Traceback" not in err


def test_config_check_masks_a_password_in_an_upstream_base_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "creds.toml"
    config.write_text(
        '[upstreams.private]\nbase_url = "https://gw:hunter2-pass@llm.internal:8443/v1"\n'
        '[upstreams.broken]\nbase_url = "ftp://ops:ftp-pass@files.internal/"\n'
    )
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "upstreams.broken.base_url: expected an http(s) URL" in err
    assert "ftp://ops:***@files.internal/" in err
    assert "ftp-pass" not in err
    config.write_text('[upstreams.private]\nbase_url = "https://gw:hunter2-pass@llm.internal/v1"\n')
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert '"base_url": "https://gw:***@llm.internal/v1"' in out
    assert "hunter2-pass" not in out


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tallygate")
    result = subprocess.run(
        [str(script), "--config", str(tmp_path / "missing.toml"), "config", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "missing.toml: expected an existing TOML file, found no such file" in result.stderr


def test_cli_revocation_reaches_a_running_gateway(gateway: Gateway) -> None:
    key = gateway.new_key("revokee")
    client = gateway.client(key)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    db = gateway.settings.store.url.removeprefix("sqlite:///")
    cfg = config_file(Path(db).parent, Path(db))
    listing = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "--config", str(cfg), "keys", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    key_id = next(line.split()[0] for line in listing.splitlines() if key[:10] in line)
    assert main(["--config", str(cfg), "keys", "revoke", key_id]) == 0
    deadline = time.monotonic() + 10  # the gateway's key cache re-reads entries after 5 s
    status = 200
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{gateway.base_url}/usage", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        if status == 401:
            break
        time.sleep(0.25)
    assert status == 401
