"""``wagate control``: a control plane replica of a fleet. Its composition root.

It runs no session. It serves the whole public API over a
:class:`~wagate.control.remote.RemoteRuntime` (commands go to each session's
owner; sends are queued rows its owner's sender picks up, woken through
Redis), seed 002's backend (registration, heartbeats, the JWT admin API),
the workers' session reports (seed 002's status, seed 004's ``/webhook``)
and the webhook dispatcher (replicas share the outbox: rows are claimed with
``FOR UPDATE SKIP LOCKED``). What must run once runs on the leader only::

    database ─ Redis (rebuilt from the record at start) ─ blobs ─ webhook dispatcher
    leadership (the ``scheduler`` lease) ─ scheduler ─ health monitor

Any number of replicas may run behind a load balancer; kill the leader and
another takes the lease once it expired (``LEADER_LEASE_TTL_MS``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx

from wagate.control.cache import RedisMirror
from wagate.control.process_runner import Launch, ProcessRunner
from wagate.control.remote import RemoteRuntime
from wagate.control.scheduler import Leadership, Scheduler
from wagate.control.session_reports import SessionReports
from wagate.domain.worker import WorkerStatus
from wagate.errors import ConfigError, StorageError, StorageUnavailable
from wagate.lifecycle import Periodic
from wagate.logs import configure
from wagate.roles.node import Node, fleet_settings, for_the_fleet, make_dirs
from wagate.roles.registry import admin_auth, ensure_configured_admin, worker_registry
from wagate.serving import bind, free_port, serve_http
from wagate.settings import Settings
from wagate.storage.redis import Redis
from wagate.storage.repos.leases import LeaderLeaseRepo, SessionLeaseRepo
from wagate.storage.repos.workers import WorkerRepo
from wagate.tasks import TaskSet
from wagate.webhooks.seed004_signing import EventVerifier, MemorySeenEvents

log = logging.getLogger(__name__)

# what a session process must not take from its control plane's environment
_NOT_INHERITED = frozenset(
    {
        "PORT",
        "WAGATE_PORT",
        "WORKER_PORT",
        "WAGATE_WORKER_PORT",
        "WORKER_ID",
        "WAGATE_WORKER_ID",
        "SESSION_ID",
        "WAGATE_SESSION_ID",
        "PROXY_URL",
        "WAGATE_PROXY_URL",
        "WAGATE_WORKER_ENDPOINT",
        "WAGATE_DATA_DIR",
        "DATA_DIR",
    }
)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class ControlPlane(Node):
    """One control replica's parts."""

    async def _start(self) -> None:
        s, c = self.settings, self.settings.cluster
        fleet_settings(s, "control")
        make_dirs(s)
        assert s.api_key is not None and c.redis_url
        self.api_key = s.api_key
        self.me = f"{socket.gethostname()}-{secrets.token_hex(4)}"
        self.instance = self.me
        await self._open_storage()
        await self._open_redis(c.redis_url, c.redis_prefix)
        self.blobs = await self._open_blobs()
        await self._start_webhooks()
        self.http = httpx.AsyncClient(timeout=c.worker_request_timeout_s)
        self._stack.push_async_callback(self.http.aclose)
        self.tasks = TaskSet("control")  # the wake-ups of owners, each short
        self._stack.push_async_callback(self.tasks.aclose)
        self.workers = WorkerRepo(self.db, self.clock)
        self.leases = SessionLeaseRepo(self.db, self.clock)
        self.runtime = RemoteRuntime(
            processes=c.session_runner == "process",
            sessions=self.sessions,
            owners=self.leases,
            workers=self.workers,
            client=self.http,
            api_key=self.api_key,
            clock=self.clock,
            worker_timeout=timedelta(seconds=c.worker_timeout_s),
            request_timeout_s=c.worker_request_timeout_s,
        )
        self.sending = self._send_service(wake=self._wake_sender)
        self.registry = worker_registry(self.db, self.clock, s, self.http, on_drain=self._drain)
        admins = admin_auth(self.db, self.clock, s)
        await ensure_configured_admin(admins, s)
        await self._start_proxy_pool(checks=False)  # checked by the leader (see _lead)
        services = self._services(
            self.runtime, engine_name=s.engine, fleet=self._fleet_figures, runs_sessions=False
        )
        reports = self._reports()
        self.services = dataclasses.replace(
            services,
            registry=self.registry,
            admins=admins,
            reports=reports,
            # WORKER_SECRET: seed 001's edge workers; fleet sessions too while no worker lives
            edge=self._edge_backend(reports, fleet_idle=self._fleet_idle),
        )
        self.tasks.spawn(self._listen(), "session-changes")
        await self._lead()

    async def _listen(self) -> None:
        """The bus of session changes wakes the API's waits (connect → QR) at once."""
        async for change in self.redis.changes():
            session_id = change.get("sessionId")
            if isinstance(session_id, str):
                self.runtime.heard(session_id)

    async def _open_redis(self, url: str, prefix: str) -> None:
        try:
            self.redis = await Redis.connect(url, prefix=prefix)
        except StorageUnavailable as exc:
            raise ConfigError(f"cannot reach REDIS_URL: {exc.message}") from None
        self._stack.push_async_callback(self.redis.aclose)
        self.mirror = RedisMirror(self.sessions, self.redis)
        written = await self.mirror.rebuild()  # Redis is a cache: the record fills it
        log.info("Redis rebuilt from the database: %d session(s)", written)

    def _reports(self) -> SessionReports:
        s, c = self.settings, self.settings.cluster
        verifier = None
        if s.webhook_secret:
            verifier = EventVerifier(
                s.webhook_secret,
                tolerance_s=c.event_tolerance_s,
                clock=self.clock,
                seen=MemorySeenEvents(c.event_replay_max),
            )
        return SessionReports(
            self.sessions,
            self.audit,
            self.clock,
            on_ping=self._pinged,
            verifier=verifier,
            worker_token=c.worker_auth_token,
            qr_expiry=s.worker.qr_expiry,
        )

    async def _lead(self) -> None:
        """The duties one replica holds at a time: placing sessions, watching workers."""
        c = self.settings.cluster
        leadership = Leadership(
            LeaderLeaseRepo(self.db, self.clock),
            name="scheduler",
            holder=self.me,
            ttl_s=c.leader_lease_ttl.total_seconds(),
            clock=self.clock,
        )
        self.leadership = await self._stack.enter_async_context(leadership)
        self.scheduler = Scheduler(
            leadership=leadership,
            leases=self.leases,
            workers=self.workers,
            lease_ttl=c.lease_ttl,
            worker_timeout=timedelta(seconds=c.worker_timeout_s),
            wake=self.redis.wake,
        )
        if c.session_runner == "process":  # seed 004: a process per session, no placing
            await self._stack.enter_async_context(self._process_runner())
        else:
            placing = Periodic(
                "scheduler",
                self.scheduler.run_once,
                c.schedule_interval_s,
                self.clock,
                at_start=True,
            )
            await self._stack.enter_async_context(placing)
        watching = Periodic("health-monitor", self._watch, c.heartbeat_interval_s, self.clock)
        await self._stack.enter_async_context(watching)
        tick = self.settings.proxy_pool.tick_s
        checks = Periodic("proxy-checks", self._check_proxies, tick, self.clock)
        await self._stack.enter_async_context(checks)

    async def _check_proxies(self) -> None:
        """The proxy pool's health checks: the leader's, one replica at a time."""
        if self.leadership.is_leader and self.proxy_pool is not None:
            await self.proxy_pool.check_due()

    def _process_runner(self) -> ProcessRunner:
        s, c = self.settings, self.settings.cluster
        self.process_runner = ProcessRunner(
            sessions=self.sessions,
            plan=self._plan,
            leading=lambda: self.leadership.is_leader,
            clock=self.clock,
            backoff=s.worker.backoff,
            reset_after_s=s.worker.backoff_reset_after_s,
            ping_timeout_s=c.ping_timeout_s,
            interval_s=c.schedule_interval_s,
            http=self.http,
            stop_timeout_s=s.worker.stop_timeout_s,
        )
        return self.process_runner

    def _plan(self, session_id: str, proxy: str | None) -> Launch:
        """``wagate worker --session ID`` beside this replica, reporting to it."""
        s = self.settings
        port = free_port(s.host)
        here = f"http://{_loopback(s.host)}:{s.port}"
        env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        env |= {
            "WAGATE_WORKER_ID": f"session-{session_id}",
            "WAGATE_WORKER_ENDPOINT": f"http://{_loopback(s.host)}:{port}",
            "WAGATE_DATA_DIR": str(s.data_dir / "sessions" / session_id),
            "BACKEND_URL": here,
            "WEBHOOK_URL": f"{here}/webhook",
            **({"PROXY_URL": proxy} if proxy else {}),
        }
        argv = [sys.executable, "-m", "wagate", "worker", "--session", session_id]
        argv += ["--host", s.host, "--port", str(port)]
        log_file = s.data_dir / "sessions" / session_id / "process.log"
        return Launch(argv, env, port, log_file)

    async def _watch(self) -> None:
        if self.leadership.is_leader:
            await self.registry.check_once()
            await self.mirror.keep()

    async def _fleet_idle(self) -> bool:
        """No fleet worker lives: edge workers are offered every session."""
        timeout = timedelta(seconds=self.settings.cluster.worker_timeout_s)
        return not await self.workers.live(timeout)

    async def _fleet_figures(self) -> dict[str, Any]:
        """``/health`` of a control plane: its workers, the leases, the sessions by state."""
        workers = Counter(w.status.value for w in await self.workers.list())
        leases = await self.leases.live_counts()
        states = await self.sessions.count_by_state()
        return {
            "leader": self.leadership.is_leader,
            "workers": {s.value: workers.get(s.value, 0) for s in WorkerStatus},
            "leases": sum(leases.values()),
            "leasesByWorker": leases,
            "sessions": {state.value: n for state, n in sorted(states.items())},
        }

    # --- hooks ---------------------------------------------------------------------------

    def _wake_sender(self, session_id: str) -> None:
        """A send was queued: wake the owner (its sender also polls: this only hurries it)."""
        self.tasks.spawn(self._wake_owner(session_id), f"wake-{session_id}")

    async def _wake_owner(self, session_id: str) -> None:
        try:
            lease = await self.leases.owner(session_id)
            if lease is not None:
                await self.redis.wake(lease.worker_id)
        except StorageError as exc:
            log.debug("could not wake the owner of %s: %s", session_id, exc)

    async def _drain(self, worker_id: str) -> None:
        try:
            await self.redis.wake(worker_id)  # it reads its draining status at once
        except StorageError as exc:
            log.warning("could not wake worker %s to drain: %s", worker_id, exc)

    async def _pinged(self, session_id: str, at_ms: int) -> None:
        try:
            await self.redis.set_last_ping(session_id, at_ms)
        except StorageError as exc:
            log.debug("could not mirror the PING of %s: %s", session_id, exc)


async def run(settings: Settings) -> None:
    """``wagate control``: serve the fleet's API until SIGINT/SIGTERM, then stop in order."""
    configure(settings.log_level)
    settings = for_the_fleet(settings)
    with bind(settings.host, settings.port, f"{settings.port_variable}, HOST") as sock:
        async with ControlPlane(settings) as node:
            log.info(
                "wagate control plane %s serving on http://%s:%d",
                node.me,
                settings.host,
                settings.port,
            )
            await serve_http(
                node.app(),
                sock,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
            )
