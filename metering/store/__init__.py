"""Adapters of :class:`metering.ports.Store`.

- :mod:`metering.store.memory`: ``MemoryStore``, plain dicts; the contract's reference and the
  test fake.
- :mod:`metering.store.sqlite`: ``SQLiteStore``, the default single-node store (aiosqlite, WAL,
  hourly rollups kept in the event transaction).
- :mod:`metering.store.postgres`: ``PostgresStore``, the store several gateway replicas share
  (asyncpg; same rollups, key-ordered group commits, migrations under an advisory lock).

Import the adapter module you need; this package imports none of them, so naming it never loads
a database driver (only the composition root picks a concrete adapter).
"""
