"""Every setting wagate reads, typed, in one object built once in ``main``.

Each field is read from ``WAGATE_<NAME>`` and, where a seed names the
variable, from that exact name too (``API_KEY``, ``PORT``, ``AUTH_DIR``, …).
When both are set the ``WAGATE_`` name wins. Durations are milliseconds
(``*_ms``), as in the seeds.

The HTTP port is ``--port``, else ``WAGATE_PORT``, else ``PORT``, else seed
002's ``WORKER_PORT``, else 8080. ``LOG_LEVEL`` also takes seed 003's pino
names (``trace``, ``warn``, ``fatal``, ``silent``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from wagate.errors import ConfigError
from wagate.settings.aliases import env
from wagate.settings.cluster import ClusterFields
from wagate.settings.operations import OperationsFields, ProxyPoolSettings
from wagate.settings.views import (
    ClusterSettings,
    EdgeWorkerSettings,
    IngestSettings,
    NeonizeSettings,
    SandboxSettings,
    SendSettings,
    StorageSettings,
    WebhookSettings,
    WorkerSettings,
)

LogLevel = Literal["debug", "info", "warning", "error", "critical", "off"]
# seed 003's pino level names, as the nearest Python level ("off": nothing is logged)
PINO_LEVELS = {"trace": "debug", "warn": "warning", "fatal": "critical", "silent": "off"}


class Settings(ClusterFields, OperationsFields):
    """wagate's configuration. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, validate_default=True
    )

    # --- where things live -------------------------------------------------------
    data_dir: Path = Field(Path("data"), validation_alias=env("DATA_DIR"))
    auth_dir: Path | None = Field(
        None, validation_alias=env("AUTH_DIR", "AUTH_DIR", "SESSIONS_DIR")
    )
    database_url: str | None = Field(None, validation_alias=env("DATABASE_URL", "DATABASE_URL"))
    # where engine credentials live: a folder per session under AUTH_DIR, or the database
    # (any worker of a cluster can then take a session over)
    auth_store: Literal["files", "database"] = Field("files", validation_alias=env("AUTH_STORE"))
    # how long a SQLite write waits for another connection's lock before it fails
    sqlite_busy_timeout_ms: int = Field(
        30_000, ge=0, validation_alias=env("SQLITE_BUSY_TIMEOUT_MS")
    )

    # --- HTTP --------------------------------------------------------------------
    host: str = Field("127.0.0.1", validation_alias=env("HOST", "HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=env("PORT", "PORT"))
    api_key: str | None = Field(None, validation_alias=env("API_KEY", "API_KEY"))
    log_level: LogLevel = Field("info", validation_alias=env("LOG_LEVEL", "LOG_LEVEL"))
    # the CLI's gateway (``wagate sessions …``, ``wagate sandbox scan``): default http://HOST:PORT
    gateway_url: str | None = Field(None, validation_alias=env("URL"))
    cli_timeout_ms: int = Field(30_000, ge=100, validation_alias=env("CLI_TIMEOUT_MS"))

    # --- engine ------------------------------------------------------------------
    engine: Literal["sandbox", "neonize"] = Field("neonize", validation_alias=env("ENGINE"))
    sandbox_url: str | None = Field(None, validation_alias=env("SANDBOX_URL", "SANDBOX_URL"))
    sandbox_key: str | None = Field(None, validation_alias=env("SANDBOX_KEY"))
    sandbox_qr_first_ms: int = Field(60_000, ge=1, validation_alias=env("SANDBOX_QR_FIRST_MS"))
    sandbox_qr_next_ms: int = Field(20_000, ge=1, validation_alias=env("SANDBOX_QR_NEXT_MS"))
    sandbox_qr_count: int = Field(6, ge=1, le=100, validation_alias=env("SANDBOX_QR_COUNT"))
    # connecting to and closing a remote sandbox (SANDBOX_URL); one request on any sandbox link
    sandbox_open_timeout_ms: int = Field(
        10_000, ge=100, validation_alias=env("SANDBOX_OPEN_TIMEOUT_MS")
    )
    sandbox_close_timeout_ms: int = Field(
        2_000, ge=10, validation_alias=env("SANDBOX_CLOSE_TIMEOUT_MS")
    )
    sandbox_request_timeout_ms: int = Field(
        30_000, ge=100, validation_alias=env("SANDBOX_REQUEST_TIMEOUT_MS")
    )
    # the standalone server pings each websocket this often and drops a peer silent this long
    # (a paused or vanished process): its device goes offline, as WhatsApp would see it
    sandbox_ws_ping_interval_ms: int = Field(
        20_000, ge=100, validation_alias=env("SANDBOX_WS_PING_INTERVAL_MS")
    )
    sandbox_ws_ping_timeout_ms: int = Field(
        20_000, ge=100, validation_alias=env("SANDBOX_WS_PING_TIMEOUT_MS")
    )
    # ``wagate sandbox`` (the standalone server) listens here unless --port says otherwise
    sandbox_port: int = Field(8090, ge=1, le=65535, validation_alias=env("SANDBOX_PORT"))

    # --- neonize -------------------------------------------------------------------
    # whatsmeow's stores in one PostgreSQL database (default: a SQLite file per session
    # under AUTH_DIR/<session>/); never logged.
    neonize_database_url: str | None = Field(None, validation_alias=env("NEONIZE_DATABASE_URL"))
    neonize_device_name: str = Field(
        "wagate", min_length=1, max_length=40, validation_alias=env("NEONIZE_DEVICE_NAME")
    )
    # a client's start holds neonize's gate alone at most this long (see engine/neonize/gate.py)
    neonize_start_window_ms: int = Field(
        2_000, ge=50, le=60_000, validation_alias=env("NEONIZE_START_WINDOW_MS")
    )
    # the same when the stores are in PostgreSQL (Go opens the database inside the start)
    neonize_db_start_window_ms: int = Field(
        10_000, ge=50, le=120_000, validation_alias=env("NEONIZE_DB_START_WINDOW_MS")
    )
    # a dial that shows no sign of life this long ends the link (proxy_error with a proxy)
    neonize_dial_deadline_ms: int = Field(
        30_000, ge=100, validation_alias=env("NEONIZE_DIAL_DEADLINE_MS")
    )
    neonize_stop_timeout_ms: int = Field(
        10_000, ge=100, validation_alias=env("NEONIZE_STOP_TIMEOUT_MS")
    )
    neonize_call_timeout_ms: int = Field(
        120_000, ge=1_000, validation_alias=env("NEONIZE_CALL_TIMEOUT_MS")
    )
    # every dial leaks a descriptor in Go: dials that fail at once are spaced up to minutes
    neonize_connect_backoff_base_ms: int = Field(
        2_000, ge=1, validation_alias=env("NEONIZE_CONNECT_BACKOFF_BASE_MS")
    )
    neonize_connect_backoff_max_ms: int = Field(
        300_000, ge=1, validation_alias=env("NEONIZE_CONNECT_BACKOFF_MAX_MS")
    )
    # how long whatsmeow may reconnect by itself before the session counts as lost
    neonize_reconnect_grace_ms: int = Field(
        15_000, ge=0, validation_alias=env("NEONIZE_RECONNECT_GRACE_MS")
    )
    # past this many open descriptors the engine asks for a restart (0: 80% of the rlimit)
    neonize_max_open_files: int = Field(0, ge=0, validation_alias=env("NEONIZE_MAX_OPEN_FILES"))
    # past this many clients set aside (each keeps a thread and a descriptor) too
    neonize_max_set_aside: int = Field(20, ge=1, validation_alias=env("NEONIZE_MAX_SET_ASIDE"))
    neonize_log_level: str = Field(
        "warning",
        pattern=r"(?i)^(debug|info|warning|error|critical)$",
        validation_alias=env("NEONIZE_LOG_LEVEL"),
    )
    # keep Go's prints ("Login event: …", "Press Ctrl+C to exit") out of the process's output
    neonize_capture_stdout: bool = Field(True, validation_alias=env("NEONIZE_CAPTURE_STDOUT"))

    # --- worker ------------------------------------------------------------------
    worker_id: str = Field("local", min_length=1, validation_alias=env("WORKER_ID", "WORKER_ID"))
    worker_port: int | None = Field(
        None, ge=1, le=65535, validation_alias=env("WORKER_PORT", "WORKER_PORT")
    )
    worker_max_sessions: int = Field(
        500, ge=1, validation_alias=env("WORKER_MAX_SESSIONS", "WORKER_MAX_SESSIONS")
    )
    backoff_base_ms: int = Field(
        1_000, ge=1, validation_alias=env("BACKOFF_BASE_MS", "WORKER_BACKOFF_BASE_MS")
    )
    backoff_max_ms: int = Field(
        30_000, ge=1, validation_alias=env("BACKOFF_MAX_MS", "WORKER_BACKOFF_MAX_MS")
    )
    backoff_jitter_ms: int = Field(500, ge=0, validation_alias=env("BACKOFF_JITTER_MS"))
    backoff_reset_after_ms: int = Field(
        60_000, ge=0, validation_alias=env("BACKOFF_RESET_AFTER_MS")
    )
    qr_expiry_ms: int = Field(300_000, ge=1_000, validation_alias=env("QR_EXPIRY_MS"))
    qr_sweep_interval_ms: int = Field(30_000, ge=10, validation_alias=env("QR_SWEEP_INTERVAL_MS"))
    connect_wait_ms: int = Field(5_000, ge=0, validation_alias=env("CONNECT_WAIT_MS"))
    stop_timeout_ms: int = Field(10_000, ge=100, validation_alias=env("STOP_TIMEOUT_MS"))

    # --- messages (outbound) ------------------------------------------------------
    # per-session pacing (anti-ban): at least this long between two sends, plus 0..jitter
    send_interval_ms: int = Field(1_000, ge=0, validation_alias=env("SEND_INTERVAL_MS"))
    send_jitter_ms: int = Field(250, ge=0, validation_alias=env("SEND_JITTER_MS"))
    # sends that failed transiently are retried; after this many attempts the message fails
    send_max_attempts: int = Field(10, ge=1, le=1000, validation_alias=env("SEND_MAX_ATTEMPTS"))
    send_retry_max_ms: int = Field(60_000, ge=1, validation_alias=env("SEND_RETRY_MAX_MS"))
    # an idle session re-checks its queue this often (rows queued by another process); 0: never
    send_poll_ms: int = Field(10_000, ge=0, validation_alias=env("SEND_POLL_MS"))
    # media to send, however it arrives (URL, base64, upload)
    send_media_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1, validation_alias=env("SEND_MEDIA_MAX_BYTES")
    )
    media_fetch_timeout_ms: int = Field(
        30_000, ge=100, validation_alias=env("MEDIA_FETCH_TIMEOUT_MS")
    )
    media_fetch_max_redirects: int = Field(
        5, ge=0, le=20, validation_alias=env("MEDIA_FETCH_MAX_REDIRECTS")
    )
    # link previews, fetched when a text with linkPreview is sent (best effort)
    link_preview_timeout_ms: int = Field(
        3_000, ge=100, validation_alias=env("LINK_PREVIEW_TIMEOUT_MS")
    )
    link_preview_html_max_bytes: int = Field(
        256 * 1024, ge=1024, validation_alias=env("LINK_PREVIEW_HTML_MAX_BYTES")
    )
    link_preview_thumbnail_max_bytes: int = Field(
        48 * 1024, ge=0, validation_alias=env("LINK_PREVIEW_THUMBNAIL_MAX_BYTES")
    )
    # queued media up to this size rides base64 in the row; larger goes to <data>/outbox/
    outbox_inline_max_bytes: int = Field(
        256 * 1024, ge=0, validation_alias=env("OUTBOX_INLINE_MAX_BYTES")
    )

    # --- ingest (inbound, seed 003) -------------------------------------------------
    max_media_mb: float = Field(
        25, gt=0, validation_alias=env("MAX_MEDIA_MB", "WORKER_MAX_MEDIA_MB")
    )
    other_media_max_mb: float = Field(5, ge=0, validation_alias=env("OTHER_MEDIA_MAX_MB"))
    worker_poll_ms: int = Field(2_000, ge=10, validation_alias=env("POLL_MS", "WORKER_POLL_MS"))
    live_window_ms: int = Field(30_000, ge=0, validation_alias=env("LIVE_WINDOW_MS"))
    link_window_ms: int = Field(90_000, ge=0, validation_alias=env("LINK_WINDOW_MS"))
    ingest_direct: bool = Field(True, validation_alias=env("INGEST_DIRECT"))
    ingest_from_me: bool = Field(True, validation_alias=env("INGEST_FROM_ME"))
    retry_min_ms: int = Field(500, ge=0, validation_alias=env("RETRY_MIN_MS"))
    retry_max_ms: int = Field(1_000, ge=0, validation_alias=env("RETRY_MAX_MS"))

    # --- object storage ------------------------------------------------------------
    blob_store: Literal["local", "s3"] | None = Field(None, validation_alias=env("STORAGE"))
    media_dir: Path | None = Field(None, validation_alias=env("MEDIA_DIR"))
    media_prefix: str = Field("wa-media", validation_alias=env("MEDIA_PREFIX"))
    s3_endpoint: str | None = Field(
        None, validation_alias=env("S3_ENDPOINT", "MINIO_ENDPOINT", "S3_ENDPOINT_URL")
    )
    s3_access_key: str | None = Field(
        None, validation_alias=env("S3_ACCESS_KEY", "MINIO_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
    )
    s3_secret_key: str | None = Field(
        None, validation_alias=env("S3_SECRET_KEY", "MINIO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
    )
    s3_bucket: str = Field("wagate", validation_alias=env("S3_BUCKET", "MINIO_BUCKET_NAME"))
    s3_use_ssl: bool = Field(False, validation_alias=env("S3_USE_SSL", "MINIO_USE_SSL"))
    s3_region: str | None = Field(None, validation_alias=env("S3_REGION", "AWS_REGION"))

    # --- webhooks ----------------------------------------------------------------
    webhook_timeout_ms: int = Field(10_000, ge=100, validation_alias=env("WEBHOOK_TIMEOUT_MS"))
    # 12 attempts, 1 min doubling up to 8 h between tries: the last one ~24.5 h after the first
    webhook_max_attempts: int = Field(
        12, ge=1, le=100, validation_alias=env("WEBHOOK_MAX_ATTEMPTS")
    )
    webhook_backoff_base_ms: int = Field(
        60_000, ge=1, validation_alias=env("WEBHOOK_BACKOFF_BASE_MS")
    )
    webhook_backoff_max_ms: int = Field(
        28_800_000, ge=1, validation_alias=env("WEBHOOK_BACKOFF_MAX_MS")
    )
    # jitter added to each delay: a random fraction (0..ratio) of it
    webhook_jitter_ratio: float = Field(
        0.1, ge=0.0, le=1.0, validation_alias=env("WEBHOOK_JITTER_RATIO")
    )
    webhook_concurrency: int = Field(16, ge=1, le=1000, validation_alias=env("WEBHOOK_CONCURRENCY"))
    webhook_poll_ms: int = Field(1_000, ge=10, validation_alias=env("WEBHOOK_POLL_MS"))
    # seed 004's shared secret: the default for subscriptions created without one
    # (an empty value counts as unset)
    webhook_secret: str | None = Field(
        None, validation_alias=env("WEBHOOK_SECRET", "WEBHOOK_SECRET")
    )

    # --- network guard -------------------------------------------------------------
    allow_private_urls: bool = Field(False, validation_alias=env("ALLOW_PRIVATE_URLS"))

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip().lower()
        return PINO_LEVELS.get(name, name)

    @model_validator(mode="after")
    def _worker_port(self) -> Self:
        """Seed 002's ``WORKER_PORT`` is the HTTP port unless a port is set explicitly."""
        if "port" not in self.model_fields_set and self.worker_port is not None:
            self.port = self.worker_port
        return self

    @property
    def port_variable(self) -> str:
        """The variable the HTTP port came from, for error messages."""
        given = [
            n for n in _names(Settings.model_fields["port"].validation_alias) if n in os.environ
        ]
        if given:
            return given[0]
        return variable("worker_port") if self.worker_port == self.port else "PORT"

    @property
    def auth_root(self) -> Path:
        return self.auth_dir if self.auth_dir is not None else self.data_dir / "auth"

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: the default SQLite file, or the given URL with its driver."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir / 'wagate.db'}"
        return to_async_url(self.database_url)

    @property
    def blob_backend(self) -> Literal["local", "s3"]:
        """``s3`` when chosen, or when an S3/MinIO endpoint is configured; else ``local``."""
        if self.blob_store is not None:
            return self.blob_store
        return "s3" if self.s3_endpoint else "local"

    @property
    def media_root(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    @property
    def s3_endpoint_url(self) -> str | None:
        """MinIO's ``host:port`` form gets a scheme from ``MINIO_USE_SSL``."""
        endpoint = self.s3_endpoint
        if endpoint and "://" not in endpoint:
            return ("https://" if self.s3_use_ssl else "http://") + endpoint
        return endpoint

    @property
    def api_key_file(self) -> Path:
        return self.data_dir / "api_key"

    @property
    def jwt_secret_file(self) -> Path:
        return self.data_dir / "jwt_secret"

    @property
    def sandbox_state_file(self) -> Path:
        return self.data_dir / "sandbox-network.json"

    # --- one typed view per package (see views.py) ----------------------------------

    @property
    def worker(self) -> WorkerSettings:
        return WorkerSettings.of(self)

    @property
    def send(self) -> SendSettings:
        return SendSettings.of(self)

    @property
    def ingest(self) -> IngestSettings:
        return IngestSettings.of(self)

    @property
    def webhooks(self) -> WebhookSettings:
        return WebhookSettings.of(self)

    @property
    def neonize(self) -> NeonizeSettings:
        return NeonizeSettings.of(self)

    @property
    def sandbox(self) -> SandboxSettings:
        return SandboxSettings.of(self)

    @property
    def storage(self) -> StorageSettings:
        return StorageSettings.of(self)

    @property
    def cluster(self) -> ClusterSettings:
        return ClusterSettings.of(self)

    @property
    def edge(self) -> EdgeWorkerSettings:
        return EdgeWorkerSettings.of(self)

    @property
    def proxy_pool(self) -> ProxyPoolSettings:
        return ProxyPoolSettings.of(self)


def to_async_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0]
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg{sep}{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite{sep}{rest}"
    return url


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment; a bad value raises one clear :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = _variable(str((first.get("loc") or ("?",))[0]))
    value = first.get("input")
    secret = any(word in name.lower() for word in ("url", "key", "secret", "token"))
    shown = "" if secret or value is None or isinstance(value, dict) else f" (got {value!r:.60})"
    return f"invalid setting {name}{shown}: {first.get('msg', 'invalid value')}"


def _variable(loc: str) -> str:
    """The environment variable behind an error: the one that is set, else all its names."""
    for name, field in Settings.model_fields.items():
        if loc == name or loc in _names(field.validation_alias):
            return variable(name)
    return loc


def variable(field: str) -> str:
    """The environment variable a setting was read from, else all the names it is read from."""
    names = _names(Settings.model_fields[field].validation_alias)
    given = [n for n in names if n in os.environ]
    return given[0] if given else " / ".join(names) or field


def _names(alias: Any) -> list[str]:
    if isinstance(alias, AliasChoices):
        return list(dict.fromkeys(str(c) for c in alias.choices))
    return []
