"""Virtual API keys: how they look, how they are hashed, how a request presents one.

A key is ``tg-`` followed by 43 URL-safe characters (256 random bits). Only its sha256 is
stored; the key itself is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "bearer_token", "display_prefix", "hash_key", "new_key"]

KEY_PREFIX = "tg-"
_DISPLAY_CHARS = 10


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key (sha256 hex). Keys are random, so no salt or KDF is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key that may appear in listings and logs."""
    return key[:_DISPLAY_CHARS]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
