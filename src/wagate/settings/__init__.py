"""Settings: the environment, read once (`env`), and one typed view per package (`views`)."""

from wagate.settings.env import (
    PINO_LEVELS,
    LogLevel,
    Settings,
    load_settings,
    to_async_url,
    variable,
)
from wagate.settings.operations import ProxyPoolSettings
from wagate.settings.views import (
    ClusterSettings,
    IngestSettings,
    NeonizeSettings,
    SandboxSettings,
    SendSettings,
    StorageSettings,
    WebhookSettings,
    WorkerSettings,
)

__all__ = [
    "ClusterSettings",
    "PINO_LEVELS",
    "ProxyPoolSettings",
    "IngestSettings",
    "LogLevel",
    "NeonizeSettings",
    "SandboxSettings",
    "SendSettings",
    "Settings",
    "StorageSettings",
    "WebhookSettings",
    "WorkerSettings",
    "load_settings",
    "to_async_url",
    "variable",
]
