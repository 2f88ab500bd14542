"""tallygate's configuration: plain data (msgspec Structs) and the one loader.

Sources, later wins: built-in defaults, a TOML file (``--config`` or ``TALLYGATE_CONFIG``), then
``TALLYGATE_*`` environment variables. Secrets never live in the file: upstreams and the admin
API name the environment variable that holds their key.
"""

from config.loader import ConfigError, ConfigIssue, load_settings, masked_settings
from config.model import (
    AdminSettings,
    MeteringSettings,
    ModelSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    UpstreamSettings,
)

__all__ = [
    "AdminSettings",
    "ConfigError",
    "ConfigIssue",
    "MeteringSettings",
    "ModelSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "UpstreamSettings",
    "load_settings",
    "masked_settings",
]
