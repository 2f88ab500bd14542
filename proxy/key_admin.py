"""Creating, listing and revoking virtual keys (shared by the CLI and the admin API)."""

from __future__ import annotations

import uuid
from datetime import datetime

from config import Settings
from metering.models import ApiKey
from metering.ports import Store
from metering.service import MeteringService
from proxy.catalog import ensure_default_catalog
from proxy.keys import display_prefix, hash_key, new_key

__all__ = ["IssuedKey", "issue_key"]


class IssuedKey:
    """A freshly created key: the record, and the secret that is shown only this once."""

    def __init__(self, record: ApiKey, secret: str) -> None:
        self.record = record
        self.secret = secret


async def issue_key(
    store: Store,
    settings: Settings,
    *,
    customer: str,
    now: datetime,
    plan: str | None = None,
    name: str | None = None,
    subscription: str | None = None,
) -> IssuedKey:
    """Create a key for ``customer``, creating the customer and subscription when missing.

    The subscription's external id defaults to ``<customer>:<plan>``, so keys of one customer
    on one plan share a subscription (and its usage), each key keeping its own share.
    """
    await ensure_default_catalog(store, settings, now)
    service = MeteringService(store, premium=settings.metering.premium)
    plan_code = plan or settings.metering.plan_code
    await service.ensure_customer(customer, now=now)
    sub = await service.ensure_subscription(
        external_id=subscription or f"{customer}:{plan_code}",
        external_customer_id=customer,
        plan_code=plan_code,
        now=now,
    )
    secret = new_key()
    record = ApiKey(
        id=f"key_{uuid.uuid4().hex[:16]}",
        prefix=display_prefix(secret),
        key_hash=hash_key(secret),
        external_customer_id=customer,
        external_subscription_id=sub.external_id,
        name=name,
        created_at=now,
    )
    await store.put_key(record)
    return IssuedKey(record, secret)
