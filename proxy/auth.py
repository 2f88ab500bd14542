"""Authentication of virtual keys, served from an in-process cache.

Lookups go by the key's sha256, so the secret never sits in a dict; the hash found is compared
again with :func:`hmac.compare_digest` so that no comparison leaks timing. Revocation through
:meth:`KeyAuthenticator.revoke` invalidates the cache entry at once; a revocation made by another
process (``tallygate keys revoke`` beside a running server, or another replica sharing a
PostgreSQL store) takes effect within ``cache_ttl`` seconds (``server.key_cache_seconds``),
because entries are re-read from the store after that long.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import datetime

import msgspec

from metering.errors import NotFound
from metering.models import ApiKey
from metering.ports import Store
from proxy.errors import GatewayError
from proxy.keys import KEY_PREFIX, bearer_token, display_prefix, hash_key

__all__ = ["KeyAuthenticator"]

# Refusals are logged with the presented key's display prefix only, never the key itself.
log = logging.getLogger("tallygate.auth")

_MISSING = (
    "You didn't provide an API key. Send your tallygate key (tg-...) as "
    "'Authorization: Bearer tg-...'."
)
_INVALID = "Incorrect API key provided."


class KeyAuthenticator:
    """Resolves ``Authorization`` headers to active :class:`ApiKey` records."""

    def __init__(self, store: Store, *, cache_ttl: float = 5.0) -> None:
        self._store = store
        self._ttl = cache_ttl
        # key hash -> (record, monotonic time after which it is re-read)
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    async def authenticate(self, authorization: str | None) -> ApiKey:
        """The active key the header presents; :class:`GatewayError` (401) otherwise."""
        token = bearer_token(authorization)
        if token is None:
            raise GatewayError("unauthorized", _MISSING, code="missing_api_key")
        if not token.startswith(KEY_PREFIX):
            raise GatewayError("unauthorized", _INVALID, code="invalid_api_key")
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            key = cached[0]
        else:
            try:
                key = await self._store.get_key(key_hash=digest)
            except NotFound:
                self._cache.pop(digest, None)
                log.info("refused an unknown key %s...", display_prefix(token))
                raise GatewayError("unauthorized", _INVALID, code="invalid_api_key") from None
            self._cache[digest] = (key, now + self._ttl)
        if not hmac.compare_digest(key.key_hash, digest) or not key.active:
            log.warning("refused revoked key %s (%s)", key.id, key.prefix)
            raise GatewayError("unauthorized", _INVALID, code="invalid_api_key")
        return key

    async def revoke(self, key_id: str, now: datetime) -> ApiKey:
        """Revoke a key in the store and drop it from the cache at once."""
        key = await self._store.get_key(id=key_id)
        if key.revoked_at is None:
            key = msgspec.structs.replace(key, revoked_at=now)
            await self._store.put_key(key)
        self._cache.pop(key.key_hash, None)
        return key
