"""``tallygate keys create|list|revoke``: key management straight on the configured store."""

from __future__ import annotations

import argparse
import sys

from config import Settings
from metering.errors import NotFound
from metering.ports import Store
from proxy.app import is_postgres, open_checked, open_store, sqlite_path
from proxy.auth import KeyAuthenticator
from proxy.key_admin import issue_key
from proxy.startup import StartupFailed
from proxy.state import system_clock

__all__ = ["run"]


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one keys subcommand; returns the exit status."""
    url = settings.store.url
    if not is_postgres(url) and not sqlite_path(url).parent.exists():
        print(
            f"tallygate: the store's directory {sqlite_path(url).parent} does not exist",
            file=sys.stderr,
        )
        return 2
    store = open_store(settings)
    try:
        await open_checked(store, url)
    except StartupFailed as exc:
        print(f"tallygate: {exc}", file=sys.stderr)
        return 2
    try:
        if args.keys_command == "create":
            return await _create(args, settings, store)
        if args.keys_command == "list":
            return await _list(store)
        return await _revoke(args.key_id, store)
    finally:
        await store.close()


async def _create(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    try:
        issued = await issue_key(
            store,
            settings,
            customer=args.customer,
            plan=args.plan,
            name=args.name,
            subscription=args.subscription,
            now=system_clock(),
        )
    except NotFound as exc:
        print(f"tallygate: {exc.resource} '{args.plan}' does not exist", file=sys.stderr)
        return 1
    record = issued.record
    print(f"key id:        {record.id}")
    print(f"customer:      {record.external_customer_id}")
    print(f"subscription:  {record.external_subscription_id}")
    print(f"api key:       {issued.secret}")
    print("Store the api key now: it is not shown again (only its hash is kept).")
    return 0


async def _list(store: Store) -> int:
    print(_row("ID", "PREFIX", "CUSTOMER", "SUBSCRIPTION", "STATUS", "NAME"))
    for key in await store.list_keys():
        status = "active" if key.active else "revoked"
        print(
            _row(
                key.id,
                key.prefix,
                key.external_customer_id,
                key.external_subscription_id,
                status,
                key.name or "",
            )
        )
    return 0


async def _revoke(key_id: str, store: Store) -> int:
    try:
        key = await KeyAuthenticator(store).revoke(key_id, system_clock())
    except NotFound:
        print(f"tallygate: no key with id {key_id}", file=sys.stderr)
        return 1
    print(f"revoked {key.id} ({key.prefix}...)")
    return 0


def _row(*cells: str) -> str:
    widths = (22, 12, 20, 28, 8)
    columns = [f"{cell:<{width}}" for cell, width in zip(cells, widths, strict=False)]
    return " ".join([*columns, cells[-1]])
