"""The settings loader: sources in order, every problem listed, secrets only from the env."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from config import ConfigError, load_settings, masked_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tallygate.toml"
    path.write_text(text)
    return path


def test_embedded_defaults_need_no_file() -> None:
    settings = load_settings(env={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.store.url == "sqlite:///./tallygate.db"
    assert settings.upstreams["openai"].base_url == "https://api.openai.com/v1"
    assert settings.upstreams["openai"].api_key_env == "OPENAI_API_KEY"
    # The seed's table: 8K gpt-4 at $0.03 / $0.06 and gpt-4-32k at $0.06 / $0.12 per 1K.
    assert settings.models["gpt-4"].input_per_1m / 1000 == Decimal("0.03")
    assert settings.models["gpt-4"].output_per_1m == Decimal("60")
    assert settings.models["gpt-4-32k"].input_per_1m / 1000 == Decimal("0.06")
    assert settings.models["gpt-4-32k"].output_per_1m == Decimal("120")
    assert settings.models["gpt-4o-mini"].cached_input_per_1m == Decimal("0.075")
    assert settings.models["text-embedding-3-small"].kind == "embedding"
    assert settings.metering.metric_code == "llm_tokens"
    assert settings.metering.field_name == "tokens"


def test_file_then_env_override_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 9000
host = "0.0.0.0"

[models."my-model"]
upstream = "openai"
input_per_1m = "0.5"
output_per_1m = 1.5
""",
    )
    settings = load_settings(path, env={"TALLYGATE_SERVER__PORT": "9100"})
    assert settings.server.port == 9100  # env beats file
    assert settings.server.host == "0.0.0.0"  # file beats default
    assert settings.models["my-model"].output_per_1m == Decimal("1.5")
    assert "gpt-4o" in settings.models  # file models extend the catalog


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9200\n")
    assert load_settings(env={"TALLYGATE_CONFIG": str(path)}).server.port == 9200


def test_file_may_replace_the_default_catalog(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
use_default_catalog = false
[upstreams.local]
base_url = "http://127.0.0.1:8000/v1"
[models.llama]
upstream = "local"
input_per_1m = "0.1"
output_per_1m = "0.2"
""",
    )
    settings = load_settings(path, env={})
    assert list(settings.models) == ["llama"]
    assert list(settings.upstreams) == ["local"]


def test_every_problem_is_listed_with_path_expected_and_found(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = "eighty"
bogus = 1

[models."gpt-9.1"]
upstream = "openai"
input_per_1m = "cheap"
output_per_1m = "1"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={"TALLYGATE_METERING__CHARGE_MODEL": "flat"})
    found = {(issue.path, issue.expected, issue.found) for issue in caught.value.issues}
    assert ("server.port", "int", "str 'eighty'") in found
    paths = {issue.path for issue in caught.value.issues}
    assert paths == {
        "server.port",
        "server.bogus",
        "models.gpt-9.1.input_per_1m",
        "metering.charge_model",
    }
    text = str(caught.value)
    assert "4 problem(s)" in text
    assert "server.bogus: expected one of the known fields" in text


def test_semantic_problems_are_listed_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
port = 70000

[upstreams.azure]
base_url = "ftp://example"
kind = "azure"

[models.orphan]
upstream = "nowhere"
input_per_1m = "-1"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    paths = [issue.path for issue in caught.value.issues]
    assert sorted(paths) == sorted(
        [
            "server.port",
            "upstreams.azure.base_url",
            "upstreams.azure.api_version",
            "models.orphan.upstream",
            "models.orphan.input_per_1m",
            "models.orphan.output_per_1m",
        ]
    )


def test_unreadable_and_invalid_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "missing.toml", env={})
    bad = write(tmp_path, "[server\nport = 1")
    with pytest.raises(ConfigError, match="expected valid TOML"):
        load_settings(bad, env={})


def test_secrets_come_only_from_named_variables(tmp_path: Path) -> None:
    settings = load_settings(env={"OPENAI_API_KEY": "sk-secret-value", "TALLYGATE_ADMIN_KEY": ""})
    assert settings.secret("OPENAI_API_KEY") == "sk-secret-value"
    assert settings.secret("TALLYGATE_ADMIN_KEY") is None
    printed = masked_settings(settings)
    assert printed["secrets"] == {"OPENAI_API_KEY": "set", "TALLYGATE_ADMIN_KEY": "unset"}
    assert "sk-secret-value" not in repr(printed)
    path = write(tmp_path, '[secrets]\nOPENAI_API_KEY = "sk-in-file"\n')
    with pytest.raises(ConfigError, match="secrets"):
        load_settings(path, env={})


def test_store_url_names_sqlite_or_postgresql_and_hides_a_password() -> None:
    url = "postgresql://tally:pw@db.internal:5432/billing?search_path=tg"
    settings = load_settings(env={"TALLYGATE_STORE__URL": url})
    assert settings.store.url == url
    shown = masked_settings(settings)["store"]["url"]
    assert shown == "postgresql://tally:***@db.internal:5432/billing?search_path=tg"
    assert load_settings(env={"TALLYGATE_STORE__URL": "postgres://db/x"}).store.url
    with pytest.raises(ConfigError) as caught:
        load_settings(
            env={
                "TALLYGATE_STORE__URL": "mysql://tally:secret@db/billing",
                "TALLYGATE_SERVER__KEY_CACHE_SECONDS": "-1",
            }
        )
    found = {(issue.path, issue.found) for issue in caught.value.issues}
    assert found == {
        ("store.url", "'mysql://tally:***@db/billing'"),
        ("server.key_cache_seconds", "-1.0"),
    }
    assert "secret" not in str(caught.value)


def test_connection_limits_have_sane_defaults_and_refuse_nonsense(tmp_path: Path) -> None:
    server = load_settings(env={}).server
    assert (server.max_header_bytes, server.max_headers, server.max_request_line_bytes) == (
        64 * 1024,
        100,
        8 * 1024,
    )
    assert (server.header_timeout_seconds, server.body_timeout_seconds) == (20.0, 60.0)
    assert server.keep_alive_seconds == 5.0
    path = write(
        tmp_path,
        "[server]\nmax_header_bytes = 0\nmax_headers = 0\nmax_request_line_bytes = 10\n"
        "header_timeout_seconds = 0\nbody_timeout_seconds = -1\nkeep_alive_seconds = 0\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert {issue.path for issue in caught.value.issues} == {
        "server.max_header_bytes",
        "server.max_headers",
        "server.max_request_line_bytes",
        "server.header_timeout_seconds",
        "server.body_timeout_seconds",
        "server.keep_alive_seconds",
    }


def test_store_timeouts_have_sane_defaults_and_refuse_nonsense(tmp_path: Path) -> None:
    store = load_settings(env={}).store
    timeouts = (
        store.statement_timeout_seconds,
        store.connect_timeout_seconds,
        store.ping_timeout_seconds,
    )
    assert timeouts == (30.0, 10.0, 5.0)
    path = write(
        tmp_path,
        "[store]\nstatement_timeout_seconds = 0\nconnect_timeout_seconds = -1\n"
        "ping_timeout_seconds = 0\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert {issue.path for issue in caught.value.issues} == {
        "store.statement_timeout_seconds",
        "store.connect_timeout_seconds",
        "store.ping_timeout_seconds",
    }


def test_an_upstream_may_name_its_organization_and_project(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[upstreams.openai]\nbase_url = "https://api.openai.com/v1"\n'
        'organization = "org-operator"\nproject = "proj_operator"\n',
    )
    upstream = load_settings(path, env={}).upstreams["openai"]
    assert (upstream.organization, upstream.project) == ("org-operator", "proj_operator")
    assert load_settings(env={}).upstreams["openai"].organization is None


def test_the_integrity_check_at_start_is_on_unless_turned_off(tmp_path: Path) -> None:
    assert load_settings(env={}).store.check_integrity_at_start is True
    path = write(tmp_path, "[store]\ncheck_integrity_at_start = false\n")
    assert load_settings(path, env={}).store.check_integrity_at_start is False
    env = {"TALLYGATE_STORE__CHECK_INTEGRITY_AT_START": "false"}
    assert load_settings(env=env).store.check_integrity_at_start is False
    with pytest.raises(ConfigError, match=r"store\.check_integrity_at_start"):
        load_settings(env={"TALLYGATE_STORE__CHECK_INTEGRITY_AT_START": "sometimes"})
