"""The one place that reads configuration files and the environment.

Order, later wins: built-in defaults (:mod:`config.defaults`), the TOML file, then environment
variables ``TALLYGATE_<SECTION>__<FIELD>`` (double underscore between levels, e.g.
``TALLYGATE_SERVER__PORT=9000``, ``TALLYGATE_STORE__URL=sqlite:///data/t.db``). Every problem is
collected and reported at once as :class:`ConfigError`; nothing here raises a traceback at a user.
"""

from __future__ import annotations

import copy
import os
import ssl
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import msgspec

from config.defaults import default_document
from config.model import Settings, UpstreamSettings

__all__ = ["ConfigError", "ConfigIssue", "load_settings", "masked_settings"]

ENV_PREFIX = "TALLYGATE_"
CONFIG_ENV = "TALLYGATE_CONFIG"
# A file may opt out of the built-in upstream and catalog to list only its own models.
_USE_DEFAULTS_KEY = "use_default_catalog"


class ConfigIssue(msgspec.Struct, frozen=True):
    """One problem: where (dotted path), what was expected, what was found."""

    path: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, found {self.found}"


class ConfigError(Exception):
    """The configuration is unusable; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid configuration ({len(issues)} problem(s)):\n{lines}")


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the effective settings from defaults, an optional TOML file and the environment."""
    environ: Mapping[str, str] = os.environ if env is None else env
    issues: list[ConfigIssue] = []
    document = default_document()
    file_path = path if path is not None else environ.get(CONFIG_ENV) or None
    if file_path is not None:
        file_doc = _read_toml(Path(file_path), issues)
        if file_doc.pop(_USE_DEFAULTS_KEY, True) is False:
            document = {}
        _deep_merge(document, file_doc)
    _deep_merge(document, _env_document(environ))
    if "secrets" in document:
        # Secret values only ever come from the variables that the settings name.
        issues.append(
            ConfigIssue("secrets", "no such table (name an *_env variable instead)", "a table")
        )
        document.pop("secrets")
    bad: list[tuple[str, ...]] = []
    _check_shape(document, Settings, (), issues, bad)
    for keys in bad:
        _prune(document, keys)
    try:
        # With the bad leaves pruned, the rest can still be checked for meaning, so one run
        # reports every problem; a missing required field makes that impossible, though.
        settings = msgspec.convert(document, Settings, strict=False)
    except msgspec.ValidationError:
        raise ConfigError(issues) from None
    _check_semantics(settings, issues)
    if issues:
        raise ConfigError(issues)
    settings.secrets = _collect_secrets(settings, environ)
    return settings


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings as a plain document, secrets replaced by whether they are set (and a
    password in ``store.url`` or an upstream's ``base_url`` masked)."""
    document: dict[str, Any] = msgspec.to_builtins(settings)
    document["store"]["url"] = _masked_url(settings.store.url)
    for name, upstream in settings.upstreams.items():
        document["upstreams"][name]["base_url"] = _masked_url(upstream.base_url)
    document["secrets"] = {
        name: ("set" if value else "unset") for name, value in settings.secrets.items()
    }
    return document


def _read_toml(path: Path, issues: list[ConfigIssue]) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        issues.append(ConfigIssue(str(path), "an existing TOML file", "no such file"))
    except OSError as exc:
        issues.append(ConfigIssue(str(path), "a readable TOML file", exc.strerror or str(exc)))
    except tomllib.TOMLDecodeError as exc:
        issues.append(ConfigIssue(str(path), "valid TOML", str(exc)))
    return {}


def _env_document(environ: Mapping[str, str]) -> dict[str, Any]:
    """``TALLYGATE_A__B__C=v`` -> ``{"a": {"b": {"c": "v"}}}`` (values converted later)."""
    document: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = document
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return document


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _deep_merge(current, value)
        else:
            base[key] = copy.deepcopy(value)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(tp))
    if origin is not None and get_origin(tp) is not dict:
        return str(tp).replace("typing.", "")
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _prune(document: dict[str, Any], keys: tuple[str, ...]) -> None:
    node: Any = document
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(keys[-1], None)


def _check_shape(
    value: Any,
    tp: Any,
    keys: tuple[str, ...],
    issues: list[ConfigIssue],
    bad: list[tuple[str, ...]],
) -> None:
    """Walk the document against the Struct types, collecting every mismatch (not just the
    first, which is all msgspec.convert reports). ``bad`` collects the offending key paths."""
    path = ".".join(keys)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if not isinstance(value, Mapping):
            issues.append(ConfigIssue(path or "(root)", "a table", _describe(value)))
            bad.append(keys)
            return
        hints = get_type_hints(tp)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in tp.__struct_fields__:
                bad.append((*keys, key))
                known = ", ".join(tp.__struct_fields__)
                issues.append(
                    ConfigIssue(sub, f"one of the known fields ({known})", "unknown field")
                )
                continue
            _check_shape(item, hints[key], (*keys, key), issues, bad)
        _check_required(value, tp, path, issues)
        return
    if get_origin(tp) is dict:
        _, value_type = get_args(tp)
        if not isinstance(value, Mapping):
            issues.append(ConfigIssue(path, "a table", _describe(value)))
            bad.append(keys)
            return
        for key, item in value.items():
            _check_shape(item, value_type, (*keys, key), issues, bad)
        return
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError:
        issues.append(ConfigIssue(path, _type_name(tp), _describe(value)))
        bad.append(keys)


def _check_required(
    value: Mapping[str, Any], tp: type[msgspec.Struct], path: str, issues: list[ConfigIssue]
) -> None:
    defaults = tp.__struct_defaults__
    fields = tp.__struct_fields__
    n_required = len(fields) - len(defaults)
    for name in fields[:n_required]:
        if name not in value:
            sub = f"{path}.{name}" if path else name
            issues.append(ConfigIssue(sub, "a value (required)", "nothing"))


def _masked_url(url: str) -> str:
    """The URL with the password of its credentials (``user:password@``) masked."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if sep and at and ":" in credentials:
        rest = f"{credentials.partition(':')[0]}:***@{host}"
    return f"{scheme}{sep}{rest}"


def _redacted_url(url: str) -> str:
    """The URL as shown in an error: quoted, a password in it masked."""
    return repr(_masked_url(url))


def _check_semantics(settings: Settings, issues: list[ConfigIssue]) -> None:
    server = settings.server
    if not 0 <= server.port <= 65535:
        issues.append(ConfigIssue("server.port", "a port 0..65535", str(server.port)))
    if server.max_body_bytes <= 0:
        issues.append(
            ConfigIssue("server.max_body_bytes", "a positive size", str(server.max_body_bytes))
        )
    if server.key_cache_seconds < 0:
        issues.append(
            ConfigIssue("server.key_cache_seconds", "seconds >= 0", str(server.key_cache_seconds))
        )
    if not settings.store.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        issues.append(
            ConfigIssue(
                "store.url",
                "a sqlite:///<path> or postgresql://... URL",
                _redacted_url(settings.store.url),
            )
        )
    for path, value, least in (
        ("server.shutdown_grace_seconds", server.shutdown_grace_seconds, 0),
        ("server.max_header_bytes", server.max_header_bytes, 1024),
        ("server.max_headers", server.max_headers, 1),
        ("server.max_request_line_bytes", server.max_request_line_bytes, 64),
        ("server.header_timeout_seconds", server.header_timeout_seconds, 0.01),
        ("server.body_timeout_seconds", server.body_timeout_seconds, 0.01),
        ("server.keep_alive_seconds", server.keep_alive_seconds, 0.01),
        ("store.busy_timeout_seconds", settings.store.busy_timeout_seconds, 0),
        ("store.max_pending_events", settings.store.max_pending_events, 1),
        ("store.statement_timeout_seconds", settings.store.statement_timeout_seconds, 0.01),
        ("store.connect_timeout_seconds", settings.store.connect_timeout_seconds, 0.01),
        ("store.ping_timeout_seconds", settings.store.ping_timeout_seconds, 0.01),
    ):
        if value < least:
            issues.append(ConfigIssue(path, f"a number >= {least}", str(value)))
    for name, upstream in settings.upstreams.items():
        if not upstream.base_url.startswith(("http://", "https://")):
            issues.append(
                ConfigIssue(
                    f"upstreams.{name}.base_url", "an http(s) URL", _redacted_url(upstream.base_url)
                )
            )
        if upstream.ca_bundle is not None:
            _check_ca_bundle(name, upstream, issues)
        if upstream.stream_options_refusal_seconds < 0:
            issues.append(
                ConfigIssue(
                    f"upstreams.{name}.stream_options_refusal_seconds",
                    "seconds >= 0",
                    str(upstream.stream_options_refusal_seconds),
                )
            )
        if upstream.retries < 0 or upstream.retry_backoff_seconds < 0:
            issues.append(
                ConfigIssue(f"upstreams.{name}.retries", "non-negative retries and backoff", "less")
            )
        if upstream.kind == "azure" and not upstream.api_version:
            issues.append(
                ConfigIssue(f"upstreams.{name}.api_version", "a version for azure", "nothing")
            )
    for name, model in settings.models.items():
        where = f"models.{name}"
        if model.upstream not in settings.upstreams:
            known = ", ".join(sorted(settings.upstreams)) or "none configured"
            issues.append(
                ConfigIssue(
                    f"{where}.upstream", f"a configured upstream ({known})", repr(model.upstream)
                )
            )
        prices = {
            "input_per_1m": model.input_per_1m,
            "cached_input_per_1m": model.cached_input_per_1m,
            "output_per_1m": model.output_per_1m,
        }
        for field, price in prices.items():
            if price is not None and (not price.is_finite() or price < 0):
                issues.append(ConfigIssue(f"{where}.{field}", "a price >= 0", str(price)))
        if model.kind == "chat" and model.output_per_1m is None:
            issues.append(
                ConfigIssue(f"{where}.output_per_1m", "a price for chat models", "nothing")
            )
    _check_shared_origins(settings, issues)
    metering = settings.metering
    if metering.package_size <= 0:
        issues.append(
            ConfigIssue("metering.package_size", "a positive size", str(metering.package_size))
        )
    if len(metering.currency) != 3 or not metering.currency.isalpha():
        issues.append(ConfigIssue("metering.currency", "an ISO 4217 code", repr(metering.currency)))


def _check_ca_bundle(name: str, upstream: UpstreamSettings, issues: list[ConfigIssue]) -> None:
    path = f"upstreams.{name}.ca_bundle"
    if not upstream.base_url.startswith("https://"):
        issues.append(ConfigIssue(path, "nothing for a plain http:// upstream", "a CA bundle"))
        return
    try:
        ssl.create_default_context(cafile=upstream.ca_bundle)
    except OSError as exc:  # ssl.SSLError too: not PEM certificates
        reason = exc.strerror or str(exc)
        issues.append(
            ConfigIssue(
                path, "a readable PEM file of CA certificates", f"{upstream.ca_bundle!r}: {reason}"
            )
        )


def _check_shared_origins(settings: Settings, issues: list[ConfigIssue]) -> None:
    # Upstreams at the same origin share its pooled connections, so they must trust alike.
    bundles: dict[tuple[str, int | None], tuple[str, str | None]] = {}
    for name, upstream in settings.upstreams.items():
        parts = urlsplit(upstream.base_url)
        if parts.scheme != "https":
            continue
        try:
            origin = (parts.hostname or "", parts.port or 443)
        except ValueError:  # a port that is no number: the connection will say so
            continue
        first = bundles.setdefault(origin, (name, upstream.ca_bundle))
        if first[1] != upstream.ca_bundle:
            issues.append(
                ConfigIssue(
                    f"upstreams.{name}.ca_bundle",
                    f"the same ca_bundle as upstreams.{first[0]} (same host and port)",
                    repr(upstream.ca_bundle),
                )
            )


def _collect_secrets(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    names = {u.api_key_env for u in settings.upstreams.values() if u.api_key_env}
    names.add(settings.admin.api_key_env)
    return {name: environ.get(name, "") for name in sorted(names)}
