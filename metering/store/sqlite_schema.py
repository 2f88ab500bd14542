"""The SQLite schema, versioned with ``PRAGMA user_version`` and migrated at open.

Records are msgspec JSON blobs (``body``) with their looked-up and unique columns alongside.
Events keep their timestamp as integer microseconds (UTC) so range queries compare integers.
"""

from __future__ import annotations

import aiosqlite

from metering.errors import StoreBroken

__all__ = ["SCHEMA_VERSION", "migrate"]

# Migration N (1-based) brings a file from user_version N-1 to N. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE metrics (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            code TEXT NOT NULL UNIQUE,
            created_us INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        """CREATE TABLE plans (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            code TEXT NOT NULL UNIQUE,
            created_us INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        """CREATE TABLE customers (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            external_id TEXT NOT NULL UNIQUE,
            created_us INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        """CREATE TABLE subscriptions (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            external_id TEXT NOT NULL,
            external_customer_id TEXT NOT NULL,
            plan_code TEXT NOT NULL,
            status TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        "CREATE INDEX subscriptions_external_id ON subscriptions (external_id, created_us)",
        "CREATE INDEX subscriptions_customer ON subscriptions (external_customer_id)",
        """CREATE TABLE api_keys (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            key_hash TEXT NOT NULL UNIQUE,
            created_us INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        # The UNIQUE constraint is the idempotency key (design.md section 5). Its column order
        # (transaction first) also serves lookups by transaction id alone.
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            transaction_id TEXT NOT NULL,
            external_subscription_id TEXT NOT NULL,
            code TEXT NOT NULL,
            ts INTEGER NOT NULL,
            created_us INTEGER NOT NULL,
            id TEXT NOT NULL,
            properties TEXT NOT NULL,
            precise_total_amount_cents TEXT,
            UNIQUE (transaction_id, external_subscription_id))""",
        "CREATE INDEX events_stream ON events (external_subscription_id, code, ts)",
        # What each code's rollup rows were built with; a change triggers a rebuild.
        """CREATE TABLE rollup_specs (
            code TEXT PRIMARY KEY,
            field_name TEXT,
            keys TEXT NOT NULL) WITHOUT ROWID""",
        # total/maximum have no declared type (no affinity): a small whole number is kept as
        # INTEGER, any other decimal as exact TEXT, never as REAL (sqlite_events). The key
        # leads with code so a rebuild's "every row of a code" is a key range as well; grain
        # is the bucket length in microseconds (hours and days live side by side).
        """CREATE TABLE rollups (
            code TEXT NOT NULL,
            external_subscription_id TEXT NOT NULL,
            grain INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            dims TEXT NOT NULL,
            events INTEGER NOT NULL,
            numeric_events INTEGER NOT NULL,
            total NOT NULL,
            maximum,
            PRIMARY KEY (code, external_subscription_id, grain, bucket, dims)) WITHOUT ROWID""",
    ),
    # 2: month rollups join hours and days. Forgetting every spec makes the store's open
    # rebuild each metric's rollups from its raw events, months included (one pass, once).
    (
        "DELETE FROM rollups",
        "DELETE FROM rollup_specs",
    ),
    # 3: small event writes leave their rollups to a later fold (sqlite_tail). Rollups hold
    # exactly the events with seq <= folded_seq; readers add the later ones (the tail) raw.
    # Every event stored so far is in the rollups.
    (
        """CREATE TABLE IF NOT EXISTS rollup_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            folded_seq INTEGER NOT NULL)""",
        "INSERT OR REPLACE INTO rollup_state (id, folded_seq) "
        "SELECT 1, coalesce(max(seq), 0) FROM events",
    ),
    # 4: values outside the numeric domain (metering.values) no longer count. Rollups an older
    # version summed them into are rebuilt from the raw events at open, as in 2 (one pass,
    # once); the tail is folded first, so folded_seq stays right.
    (
        "DELETE FROM rollups",
        "DELETE FROM rollup_specs",
    ),
)

#: The schema version this code writes and expects.
SCHEMA_VERSION = len(_MIGRATIONS)


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` in one transaction; returns the old version.

    Raises StoreBroken for a file written by a newer tallygate (never downgrade silently).
    """
    await conn.execute("BEGIN IMMEDIATE")
    committed = False
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row is not None else 0
        if current > SCHEMA_VERSION:
            raise StoreBroken(
                f"database schema version {current} is newer than this tallygate's "
                f"({SCHEMA_VERSION}); upgrade tallygate"
            )
        for statements in _MIGRATIONS[current:]:
            for statement in statements:
                await conn.execute(statement)
        if current != SCHEMA_VERSION:
            # PRAGMA takes no bound parameters; the value is our own integer.
            await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await conn.execute("COMMIT")
        committed = True
    finally:
        if not committed and conn.in_transaction:
            await conn.execute("ROLLBACK")
    return current
