"""One typed view of the settings per package: durations in seconds (``*_s``) or as ``timedelta``.

The environment speaks milliseconds, as the seeds do; the code does not. Each
service takes only its own view, so what it can be configured with is written
in its constructor, and a test builds the view it needs without an environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wagate.backoff import Backoff

if TYPE_CHECKING:
    from wagate.settings.env import Settings

_MB = 1024 * 1024


def _s(ms: float) -> float:
    return ms / 1000


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker hosts sessions (:mod:`wagate.worker`)."""

    worker_id: str
    max_sessions: int
    auth_store: Literal["files", "database"]
    auth_root: Path
    backoff: Backoff
    backoff_reset_after_s: float
    qr_expiry: timedelta
    qr_sweep_interval_s: float
    connect_wait_s: float
    stop_timeout_s: float
    flag_poll_s: float

    @classmethod
    def of(cls, s: Settings) -> WorkerSettings:
        return cls(
            worker_id=s.worker_id,
            max_sessions=s.worker_max_sessions,
            auth_store=s.auth_store,
            auth_root=s.auth_root,
            backoff=Backoff(_s(s.backoff_base_ms), _s(s.backoff_max_ms), _s(s.backoff_jitter_ms)),
            backoff_reset_after_s=_s(s.backoff_reset_after_ms),
            qr_expiry=timedelta(milliseconds=s.qr_expiry_ms),
            qr_sweep_interval_s=_s(s.qr_sweep_interval_ms),
            connect_wait_s=_s(s.connect_wait_ms),
            stop_timeout_s=_s(s.stop_timeout_ms),
            flag_poll_s=_s(s.worker_poll_ms),
        )


@dataclass(frozen=True, slots=True)
class SendSettings:
    """The outbound side (:mod:`wagate.outbound`): pacing, retries, media to send, previews."""

    interval_s: float
    jitter_s: float
    max_attempts: int
    retry_max_s: float
    poll_s: float
    media_max_bytes: int
    media_fetch_timeout_s: float
    media_fetch_max_redirects: int
    link_preview_timeout_s: float
    link_preview_html_max_bytes: int
    link_preview_thumbnail_max_bytes: int
    inline_max_bytes: int
    spool_dir: Path
    allow_private_urls: bool
    stop_timeout_s: float

    @classmethod
    def of(cls, s: Settings) -> SendSettings:
        return cls(
            interval_s=_s(s.send_interval_ms),
            jitter_s=_s(s.send_jitter_ms),
            max_attempts=s.send_max_attempts,
            retry_max_s=_s(s.send_retry_max_ms),
            poll_s=_s(s.send_poll_ms),
            media_max_bytes=s.send_media_max_bytes,
            media_fetch_timeout_s=_s(s.media_fetch_timeout_ms),
            media_fetch_max_redirects=s.media_fetch_max_redirects,
            link_preview_timeout_s=_s(s.link_preview_timeout_ms),
            link_preview_html_max_bytes=s.link_preview_html_max_bytes,
            link_preview_thumbnail_max_bytes=s.link_preview_thumbnail_max_bytes,
            inline_max_bytes=s.outbox_inline_max_bytes,
            spool_dir=s.data_dir / "outbox",
            allow_private_urls=s.allow_private_urls,
            stop_timeout_s=_s(s.stop_timeout_ms),
        )


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """The inbound side (:mod:`wagate.ingest`, seed 003)."""

    max_media_bytes: int
    other_media_max_bytes: int
    live_window: timedelta
    link_window: timedelta
    ingest_direct: bool
    ingest_from_me: bool
    retry_min_s: float
    retry_max_s: float
    media_prefix: str
    spool_dir: Path

    @classmethod
    def of(cls, s: Settings) -> IngestSettings:
        return cls(
            max_media_bytes=int(s.max_media_mb * _MB),
            other_media_max_bytes=int(s.other_media_max_mb * _MB),
            live_window=timedelta(milliseconds=s.live_window_ms),
            link_window=timedelta(milliseconds=s.link_window_ms),
            ingest_direct=s.ingest_direct,
            ingest_from_me=s.ingest_from_me,
            retry_min_s=_s(s.retry_min_ms),
            retry_max_s=_s(max(s.retry_min_ms, s.retry_max_ms)),
            media_prefix=s.media_prefix,
            spool_dir=s.data_dir / "spool",
        )


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Delivery of the outbox (:mod:`wagate.webhooks`)."""

    timeout_s: float
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    jitter_ratio: float
    concurrency: int
    poll_s: float
    secret: str | None
    allow_private_urls: bool
    stop_timeout_s: float

    @classmethod
    def of(cls, s: Settings) -> WebhookSettings:
        return cls(
            timeout_s=_s(s.webhook_timeout_ms),
            max_attempts=s.webhook_max_attempts,
            backoff_base_s=_s(s.webhook_backoff_base_ms),
            backoff_max_s=_s(s.webhook_backoff_max_ms),
            jitter_ratio=s.webhook_jitter_ratio,
            concurrency=s.webhook_concurrency,
            poll_s=_s(s.webhook_poll_ms),
            secret=s.webhook_secret or None,
            allow_private_urls=s.allow_private_urls,
            stop_timeout_s=_s(s.stop_timeout_ms),
        )


@dataclass(frozen=True, slots=True)
class NeonizeSettings:
    """The neonize engine (:mod:`wagate.engine.neonize`)."""

    database_url: str | None
    device_name: str
    start_window_s: float
    db_start_window_s: float
    dial_deadline_s: float
    stop_timeout_s: float
    call_timeout_s: float
    connect_backoff_base_s: float
    connect_backoff_max_s: float
    reconnect_grace_s: float
    max_open_files: int
    max_set_aside: int
    log_level: str
    capture_stdout: bool

    @classmethod
    def of(cls, s: Settings) -> NeonizeSettings:
        return cls(
            database_url=s.neonize_database_url,
            device_name=s.neonize_device_name,
            start_window_s=_s(s.neonize_start_window_ms),
            db_start_window_s=_s(s.neonize_db_start_window_ms),
            dial_deadline_s=_s(s.neonize_dial_deadline_ms),
            stop_timeout_s=_s(s.neonize_stop_timeout_ms),
            call_timeout_s=_s(s.neonize_call_timeout_ms),
            connect_backoff_base_s=_s(s.neonize_connect_backoff_base_ms),
            connect_backoff_max_s=_s(s.neonize_connect_backoff_max_ms),
            reconnect_grace_s=_s(s.neonize_reconnect_grace_ms),
            max_open_files=s.neonize_max_open_files,
            max_set_aside=s.neonize_max_set_aside,
            log_level=s.neonize_log_level,
            capture_stdout=s.neonize_capture_stdout,
        )


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """The sandbox network, in this process or at ``url`` (:mod:`wagate.sandbox`)."""

    url: str | None
    key: str | None
    qr_first_s: float
    qr_next_s: float
    qr_count: int
    open_timeout_s: float
    close_timeout_s: float
    request_timeout_s: float
    ws_ping_interval_s: float
    ws_ping_timeout_s: float
    port: int
    state_file: Path

    @classmethod
    def of(cls, s: Settings) -> SandboxSettings:
        return cls(
            url=s.sandbox_url,
            key=s.sandbox_key,
            qr_first_s=_s(s.sandbox_qr_first_ms),
            qr_next_s=_s(s.sandbox_qr_next_ms),
            qr_count=s.sandbox_qr_count,
            open_timeout_s=_s(s.sandbox_open_timeout_ms),
            close_timeout_s=_s(s.sandbox_close_timeout_ms),
            request_timeout_s=_s(s.sandbox_request_timeout_ms),
            ws_ping_interval_s=_s(s.sandbox_ws_ping_interval_ms),
            ws_ping_timeout_s=_s(s.sandbox_ws_ping_timeout_ms),
            port=s.sandbox_port,
            state_file=s.sandbox_state_file,
        )


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The database and object storage (:mod:`wagate.storage`)."""

    sqlalchemy_url: str
    sqlite_busy_timeout_s: float
    data_dir: Path
    blob_backend: Literal["local", "s3"]
    media_root: Path
    s3_endpoint_url: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_bucket: str
    s3_region: str | None

    @classmethod
    def of(cls, s: Settings) -> StorageSettings:
        return cls(
            sqlalchemy_url=s.sqlalchemy_url,
            sqlite_busy_timeout_s=_s(s.sqlite_busy_timeout_ms),
            data_dir=s.data_dir,
            blob_backend=s.blob_backend,
            media_root=s.media_root,
            s3_endpoint_url=s.s3_endpoint_url,
            s3_access_key=s.s3_access_key,
            s3_secret_key=s.s3_secret_key,
            s3_bucket=s.s3_bucket,
            s3_region=s.s3_region,
        )


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """A fleet: Redis, the worker ↔ control plane protocol, leases, the admin API."""

    redis_url: str | None
    redis_prefix: str
    redis_timeout_s: float
    backend_url: str | None
    worker_auth_token: str | None
    worker_endpoint: str | None
    worker_description: str
    heartbeat_interval_s: float
    worker_timeout_s: float
    lease_ttl: timedelta
    lease_renew_s: float
    lease_margin: timedelta
    leader_lease_ttl: timedelta
    schedule_interval_s: float
    worker_request_timeout_s: float
    session_runner: Literal["embedded", "process"]
    session_id: str | None  # a session process's one session (seed 004's SESSION_ID)
    webhook_url: str | None  # where a session process reports seed 004's events
    ping_timeout_s: float  # a session process silent this long is restarted (PING_TIMEOUT_MS)
    ping_interval_s: float
    event_tolerance_s: float
    event_replay_max: int
    report_max_attempts: int
    report_backoff: Backoff
    report_queue_max: int
    jwt_ttl: timedelta
    worker_probe_timeout_s: float
    allow_private_urls: bool  # the admin's connectivity test may reach internal addresses
    worker_secret: str | None  # seed 001's edge workers (None: no worker-proxy)
    edge_prefix: str  # where the worker-proxy is served, without a trailing slash
    edge_claim_ttl: timedelta  # an instance or a queued message handed to an edge worker

    @classmethod
    def of(cls, s: Settings) -> ClusterSettings:
        return cls(
            redis_url=s.redis_url,
            redis_prefix=s.redis_prefix,
            redis_timeout_s=_s(s.redis_timeout_ms),
            backend_url=s.backend_url.rstrip("/") if s.backend_url else None,
            worker_auth_token=s.worker_auth_token or None,
            worker_endpoint=s.worker_endpoint,
            worker_description=s.worker_description,
            heartbeat_interval_s=_s(s.heartbeat_interval_ms),
            worker_timeout_s=_s(s.worker_timeout_ms),
            lease_ttl=timedelta(milliseconds=s.lease_ttl_ms),
            lease_renew_s=_s(s.lease_renew_ms),
            lease_margin=timedelta(milliseconds=s.lease_margin_ms),
            leader_lease_ttl=timedelta(milliseconds=s.leader_lease_ttl_ms),
            schedule_interval_s=_s(s.schedule_interval_ms),
            worker_request_timeout_s=_s(s.worker_request_timeout_ms),
            session_runner=s.session_runner,
            session_id=s.session_id,
            webhook_url=s.webhook_url,
            ping_timeout_s=_s(s.ping_timeout_ms),
            ping_interval_s=_s(s.ping_interval_ms),
            event_tolerance_s=_s(s.event_tolerance_ms),
            event_replay_max=s.event_replay_max,
            report_max_attempts=s.report_max_attempts,
            report_backoff=Backoff(
                _s(s.report_backoff_base_ms), _s(s.report_backoff_max_ms), jitter_ratio=0.1
            ),
            report_queue_max=s.report_queue_max,
            jwt_ttl=timedelta(milliseconds=s.jwt_ttl_ms),
            worker_probe_timeout_s=_s(s.worker_probe_timeout_ms),
            allow_private_urls=s.allow_private_urls,
            worker_secret=s.worker_secret or None,
            edge_prefix=s.edge_prefix.rstrip("/") or "/worker-proxy",
            edge_claim_ttl=timedelta(milliseconds=s.edge_claim_ttl_ms),
        )


@dataclass(frozen=True, slots=True)
class EdgeWorkerSettings:
    """Seed 001's edge worker (``wagate worker --uplink edge``): its worker-proxy and pace."""

    base_url: str | None  # EDGE_BASE_URL, without a trailing slash
    secret: str | None  # WORKER_SECRET, sent as Bearer
    worker_id: str  # named in X-Wagate-Worker: the worker-proxy's claims are per worker
    instance_poll_s: float
    msg_poll_s: float
    request_timeout_s: float
    retry: Backoff  # a report the worker-proxy did not take is tried again after this
    sent_memory: timedelta
    spool_path: Path  # what is not yet reported, and what was sent (DATA_DIR)

    @classmethod
    def of(cls, s: Settings) -> EdgeWorkerSettings:
        return cls(
            base_url=s.edge_base_url.rstrip("/") if s.edge_base_url else None,
            secret=s.worker_secret or None,
            worker_id=s.worker_id,
            instance_poll_s=_s(s.instance_poll_ms),
            msg_poll_s=_s(s.msg_poll_ms),
            request_timeout_s=_s(s.edge_request_timeout_ms),
            retry=Backoff(_s(s.edge_retry_base_ms), _s(s.edge_retry_max_ms), jitter_ratio=0.2),
            sent_memory=timedelta(milliseconds=s.edge_sent_memory_ms),
            spool_path=s.data_dir / "edge-spool.sqlite3",
        )
