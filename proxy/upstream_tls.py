"""The TLS trust of each upstream: its own CA bundle (``upstreams.<name>.ca_bundle``) or the
default one. The config loader has checked each bundle and that upstreams sharing a host and
port name the same one."""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import httpx

from config import UpstreamSettings

__all__ = ["ssl_contexts"]


def ssl_contexts(
    upstreams: Mapping[str, UpstreamSettings],
) -> dict[tuple[str, int], ssl.SSLContext]:
    """``(host, port)`` -> the context trusting that upstream's ``ca_bundle``, for every
    HTTPS upstream that names one (the others verify against the default bundle)."""
    by_bundle: dict[str, ssl.SSLContext] = {}
    contexts: dict[tuple[str, int], ssl.SSLContext] = {}
    for upstream in upstreams.values():
        bundle = upstream.ca_bundle
        if bundle is None:
            continue
        url = httpx.URL(upstream.base_url)  # https:// (the loader refuses a bundle for http://)
        context = by_bundle.get(bundle)
        if context is None:
            context = by_bundle[bundle] = ssl.create_default_context(cafile=bundle)
            context.set_alpn_protocols(["http/1.1"])
        contexts[(url.host, url.port or 443)] = context
    return contexts
