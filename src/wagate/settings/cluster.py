"""The settings of a fleet: the control plane, its workers, Redis, leases, the admin API.

Read with every other setting (``Settings`` inherits these fields); the
all-in-one ``wagate serve`` needs none of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from wagate.settings.aliases import env


class ClusterFields(BaseSettings):
    # --- the shared bus and cache ----------------------------------------------------
    redis_url: str | None = Field(None, validation_alias=env("REDIS_URL", "REDIS_URL"))
    # a prefix before every key and channel (several deployments, or tests, on one Redis)
    redis_prefix: str = Field("", max_length=64, validation_alias=env("REDIS_PREFIX"))
    # one Redis command (or connection attempt) taking longer than this: Redis counts as down
    redis_timeout_ms: int = Field(5_000, ge=50, validation_alias=env("REDIS_TIMEOUT_MS"))

    # --- a worker and its control plane (seed 002) -------------------------------------
    backend_url: str | None = Field(None, validation_alias=env("BACKEND_URL", "BACKEND_URL"))
    # sent as Bearer on every worker → control plane call, checked there; never logged
    worker_auth_token: str | None = Field(
        None, validation_alias=env("WORKER_AUTH_TOKEN", "WORKER_AUTH_TOKEN")
    )
    # how the control plane reaches this worker's HTTP API (default: http://HOST:PORT)
    worker_endpoint: str | None = Field(None, validation_alias=env("WORKER_ENDPOINT"))
    worker_description: str = Field("", max_length=500, validation_alias=env("WORKER_DESCRIPTION"))
    heartbeat_interval_ms: int = Field(
        30_000, ge=100, validation_alias=env("HEARTBEAT_INTERVAL_MS")
    )
    # a worker silent this long is dead: its sessions go to other workers
    worker_timeout_ms: int = Field(90_000, ge=200, validation_alias=env("WORKER_TIMEOUT_MS"))
    # a session's owner holds a lease this long, renews it this often, and drops its
    # connections when it could not renew for LEASE_TTL_MS - LEASE_MARGIN_MS
    lease_ttl_ms: int = Field(45_000, ge=300, validation_alias=env("LEASE_TTL_MS"))
    lease_renew_ms: int = Field(15_000, ge=100, validation_alias=env("LEASE_RENEW_MS"))
    lease_margin_ms: int = Field(10_000, ge=50, validation_alias=env("LEASE_MARGIN_MS"))
    # duties held by one control replica at a time (scheduler, health monitor)
    leader_lease_ttl_ms: int = Field(15_000, ge=300, validation_alias=env("LEADER_LEASE_TTL_MS"))
    schedule_interval_ms: int = Field(5_000, ge=50, validation_alias=env("SCHEDULE_INTERVAL_MS"))
    # the control plane's wait for a worker's answer to a proxied command
    worker_request_timeout_ms: int = Field(
        15_000, ge=100, validation_alias=env("WORKER_REQUEST_TIMEOUT_MS")
    )
    # the control plane's probe of a worker's /health (a registration's id check, the admin's test)
    worker_probe_timeout_ms: int = Field(
        3_000, ge=100, validation_alias=env("WORKER_PROBE_TIMEOUT_MS")
    )

    # --- one process per session (seed 004) ----------------------------------------------
    session_runner: Literal["embedded", "process"] = Field(
        "embedded", validation_alias=env("SESSION_RUNNER", "SESSION_RUNNER")
    )
    session_id: str | None = Field(None, validation_alias=env("SESSION_ID", "SESSION_ID"))
    proxy_url: str | None = Field(None, validation_alias=env("PROXY_URL", "PROXY_URL"))
    # where a session process reports seed 004's events (the control plane's /webhook)
    webhook_url: str | None = Field(None, validation_alias=env("WEBHOOK_URL", "WEBHOOK_URL"))
    ping_interval_ms: int = Field(15_000, ge=100, validation_alias=env("PING_INTERVAL_MS"))
    # a session process whose last PING is older is restarted (seed 004's watchdog timeout)
    ping_timeout_ms: int = Field(
        180_000, ge=200, validation_alias=env("PING_TIMEOUT_MS", "PING_TIMEOUT_MS")
    )
    # how far a signed seed 004 event's timestamp may be from now
    event_tolerance_ms: int = Field(300_000, ge=1_000, validation_alias=env("EVENT_TOLERANCE_MS"))
    # signed events the control plane remembers, to refuse a replay inside the tolerance
    event_replay_max: int = Field(100_000, ge=100, validation_alias=env("EVENT_REPLAY_MAX"))
    # a worker's reports to its control plane (seed 002's status, seed 004's events): tries
    # per report, the delays between them, and how many may wait while it is unreachable
    report_max_attempts: int = Field(6, ge=1, le=100, validation_alias=env("REPORT_MAX_ATTEMPTS"))
    report_backoff_base_ms: int = Field(500, ge=1, validation_alias=env("REPORT_BACKOFF_BASE_MS"))
    report_backoff_max_ms: int = Field(30_000, ge=1, validation_alias=env("REPORT_BACKOFF_MAX_MS"))
    report_queue_max: int = Field(
        1_000, ge=1, le=1_000_000, validation_alias=env("REPORT_QUEUE_MAX")
    )

    # --- seed 001's edge workers: the worker-proxy the control plane (or serve) offers ---
    # the edge workers' Bearer secret; the worker-proxy is served only when it is set
    worker_secret: str | None = Field(None, validation_alias=env("WORKER_SECRET", "WORKER_SECRET"))
    # where the five endpoints live (seed 001's EDGE_BASE_URL points here)
    edge_prefix: str = Field(
        "/worker-proxy", pattern=r"^/[A-Za-z0-9._~/-]*$", validation_alias=env("EDGE_PREFIX")
    )
    # an instance (and each queued message) handed to an edge worker is its own this long,
    # renewed by each of its calls about it
    edge_claim_ttl_ms: int = Field(30_000, ge=100, validation_alias=env("EDGE_CLAIM_TTL_MS"))

    # --- seed 001's edge worker (``wagate worker --uplink edge``) -------------------------
    # the worker-proxy this worker polls; with no DATABASE_URL it selects the edge uplink
    edge_base_url: str | None = Field(None, validation_alias=env("EDGE_BASE_URL", "EDGE_BASE_URL"))
    uplink: Literal["fleet", "edge"] | None = Field(None, validation_alias=env("UPLINK"))
    instance_poll_ms: int = Field(
        10_000, ge=50, validation_alias=env("INSTANCE_POLL_MS", "INSTANCE_POLL_MS")
    )
    msg_poll_ms: int = Field(2_000, ge=50, validation_alias=env("MSG_POLL_MS", "MSG_POLL_MS"))
    # one call to the worker-proxy taking longer than this has failed (and is retried)
    edge_request_timeout_ms: int = Field(
        15_000, ge=100, validation_alias=env("EDGE_REQUEST_TIMEOUT_MS")
    )
    # retries of a status, an inbound message or a mark-sent the worker-proxy did not take
    edge_retry_base_ms: int = Field(500, ge=1, validation_alias=env("EDGE_RETRY_BASE_MS"))
    edge_retry_max_ms: int = Field(60_000, ge=1, validation_alias=env("EDGE_RETRY_MAX_MS"))
    # how long the worker remembers what it sent (a message handed out again is not resent)
    edge_sent_memory_ms: int = Field(
        7 * 86_400_000, ge=60_000, validation_alias=env("EDGE_SENT_MEMORY_MS")
    )

    # --- the admin API's users (seed 002: JWT) ---------------------------------------------
    # signing key of the admin JWTs; generated and kept under DATA_DIR when unset
    jwt_secret: str | None = Field(None, min_length=32, validation_alias=env("JWT_SECRET"))
    jwt_ttl_ms: int = Field(3_600_000, ge=60_000, validation_alias=env("JWT_TTL_MS"))
    # an admin user made (or updated) at start, for deployments configured by environment
    admin_user: str | None = Field(None, max_length=64, validation_alias=env("ADMIN_USER"))
    admin_password: str | None = Field(None, validation_alias=env("ADMIN_PASSWORD"))
