"""tallygate's metering core: Lago's billing semantics as pure types and math.

Nothing here performs HTTP, reads the environment or the clock, or names a database driver;
storage is reached through the protocols in :mod:`metering.ports`, implemented by the adapters
in :mod:`metering.store`.
"""
