"""``tallygate config check``: the effective settings, secrets masked."""

from __future__ import annotations

import msgspec

from config import Settings, masked_settings

__all__ = ["print_config"]


def print_config(settings: Settings) -> int:
    """Print the effective settings as JSON (secrets only as set/unset); exit status 0."""
    document = masked_settings(settings)
    print(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
    unset = [name for name, state in document["secrets"].items() if state == "unset"]
    if unset:
        print(f"note: unset secret variables: {', '.join(unset)}")
    print("configuration OK")
    return 0
