"""``wagate worker``: a worker node of a fleet (seed 002), hosting the sessions it holds leases on.

Its composition root. Start-up follows seed 002's order: the HTTP server
(its worker API, and the ``/internal`` routes its control plane proxies
commands to), then ``POST /api/v1/workers/register`` (a refusal ends the
start with one line), then the heartbeat, then its sessions::

    database ─ Redis ─ engine ─ blobs ─ ingest ─ sender (fenced) ─ status reporter
    worker (no resume: sessions start from leases) ─ heartbeat ─ ownership

The ownership service (``worker/ownership.py``) renews this worker's leases
and runs exactly the sessions they name. Leaving, in reverse: ownership hands
every session over and releases its lease (the scheduler places them
elsewhere at once), the heartbeat says ``draining``, the worker stops. A
drain asked through the control plane (``POST /api/v1/workers/{id}/drain``)
ends the process the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Sequence

import httpx

from wagate.clock import Clock
from wagate.control.cache import RedisMirror
from wagate.control.runtime import LeasedRuntime
from wagate.domain.worker import WorkerStatus
from wagate.engine.base import Engine
from wagate.errors import ConfigError, Conflict, StorageError
from wagate.lifecycle import Periodic
from wagate.logs import configure
from wagate.roles.node import Node, fleet_settings, for_the_fleet, make_dirs
from wagate.serving import Http, bind
from wagate.settings import Settings
from wagate.storage.redis import Redis
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.workers import WorkerRepo
from wagate.uplinks.backend import Backend, Registration, heartbeat_body
from wagate.uplinks.gateway import StatusReporter
from wagate.uplinks.seed004 import EventReporter
from wagate.worker.events import EventRoutes
from wagate.worker.host import Listener, Worker
from wagate.worker.ownership import LeaseBook, Ownership, Terms

log = logging.getLogger(__name__)


class WorkerNode(Node):
    """A fleet worker's parts; ``join()`` registers it and starts its sessions."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        listeners: Sequence[Listener] = (),
        instance: str | None = None,
    ) -> None:
        super().__init__(settings, clock=clock, engine=engine, listeners=listeners)
        self.me = instance or secrets.token_hex(8)  # this process, among its worker id's
        self.instance = self.me
        self.worker_id = settings.worker.worker_id
        # seed 004's isolation: this process runs this one session (``--session ID``)
        self.session_id = settings.cluster.session_id
        self.draining = False
        self.on_exit: Callable[[], None] = lambda: None  # set by run(): ends the HTTP server

    async def _start(self) -> None:
        s, c = self.settings, self.settings.cluster
        fleet_settings(s, "worker")
        make_dirs(s)
        assert s.api_key is not None and c.redis_url and c.backend_url and c.worker_auth_token
        self.api_key = s.api_key
        self.terms = Terms(
            ttl_s=c.lease_ttl.total_seconds(),
            renew_s=c.lease_renew_s,
            margin_s=c.lease_margin.total_seconds(),
        )
        self.book = LeaseBook(self.worker_id, self.clock, self.terms)
        self.fences = self.book  # every owner-only write below carries this worker's tokens
        await self._open_storage()
        self.redis = await Redis.connect(c.redis_url, prefix=c.redis_prefix)
        self._stack.push_async_callback(self.redis.aclose)
        self.engine = self._given_engine or self._build_engine()
        self._stack.push_async_callback(self.engine.aclose)
        self.blobs = await self._open_blobs()
        await self._start_webhooks(dispatch=False)
        await self._start_ingest()
        await self._start_outbound()
        await self._start_proxy_pool(checks=False)  # the failover's; the leader checks
        self.http = httpx.AsyncClient(timeout=c.worker_request_timeout_s)
        self._stack.push_async_callback(self.http.aclose)
        self.backend = Backend(c.backend_url, c.worker_auth_token, self.http)
        reporter = StatusReporter(
            c.backend_url, c.worker_auth_token, client=self.http, clock=self.clock
        )
        self.status_reporter = await self._stack.enter_async_context(reporter)
        listeners: list[Listener] = [self.status_reporter.on_change]
        if self.session_id is not None:
            listeners.append(await self._report_events(self.session_id))
        await self._start_worker([*listeners, RedisMirror(self.sessions, self.redis).on_change])
        self.workers = WorkerRepo(self.db, self.clock)
        self.ownership = Ownership(
            worker=self.worker,
            book=self.book,
            leases=SessionLeaseRepo(self.db, self.clock),
            liveness=self,
            instance=self.me,
            terms=self.terms,
            clock=self.clock,
            on_taken_over=self._taken_over,
            wakeups=self._wakeups(),
        )
        self.runtime = LeasedRuntime(self.worker, self.ownership)
        services = self._services(self.runtime, engine_name=self.engine.name)
        self.services = dataclasses.replace(services, runtime=self.runtime)

    async def _report_events(self, session_id: str) -> Listener:
        """Seed 004: a session process reports its session's events to ``WEBHOOK_URL``."""
        s, c = self.settings, self.settings.cluster
        if not (c.webhook_url and s.webhook_secret):
            raise ConfigError(
                "wagate worker --session needs WEBHOOK_URL and WEBHOOK_SECRET (seed 004's events)"
            )
        reporter = EventReporter(
            c.webhook_url,
            s.webhook_secret,
            session_id,
            client=self.http,
            clock=self.clock,
            ping_interval_s=c.ping_interval_s,
            backoff=c.report_backoff,
            max_attempts=c.report_max_attempts,
            max_queued=c.report_queue_max,
        )
        self.event_reporter = await self._stack.enter_async_context(reporter)
        return self.event_reporter.on_change

    async def _start_worker(self, listeners: list[Listener]) -> None:
        worker = Worker(
            self.settings.worker,
            engine=self.engine,
            sessions=self.sessions,
            audit=self.audit,
            clock=self.clock,
            handler=EventRoutes(inbound=self.ingest, outbound=self.sender),
            auth=self._auth_factory(),
            resume=False,  # a fleet worker starts the sessions its leases name, no others
            proxy_failover=self.proxy_pool.failover if self.proxy_pool else None,
            listeners=[*self._listeners, *listeners, *self._pool_listeners()],
        )
        self.worker = await self._stack.enter_async_context(worker)

    async def _wakeups(self) -> AsyncIterator[None]:
        """Wake-ups through Redis: a new assignment, a drain, or sends queued elsewhere."""
        async for _ in self.redis.wakeups(self.worker_id):
            for session_id in self.worker.running():
                self.sender.wake(session_id)
            yield None

    # --- joining the fleet (after the HTTP server listens) --------------------------------

    async def join(self, endpoint: str) -> None:
        """Register (a refusal is a ConfigError), heartbeat, then take this worker's sessions."""
        c = self.settings.cluster
        registration = Registration(
            worker_id=self.worker_id,
            endpoint=endpoint,
            max_sessions=self.settings.worker.max_sessions,
            description=c.worker_description or f"wagate worker on {socket.gethostname()}",
            instance=self.me,
        )
        await self.backend.register(registration)
        log.info("registered with the control plane as %s (%s)", self.worker_id, endpoint)
        beat = Periodic(
            "heartbeat", self.heartbeat, c.heartbeat_interval_s, self.clock, at_start=True
        )
        await self._stack.enter_async_context(beat)
        await self._stack.enter_async_context(self.ownership)
        if self.session_id is not None:
            await self._take(self.session_id)

    async def _take(self, session_id: str) -> None:
        """A session process starts its session at once, once its lease is free to take.

        The lease may still be held by the process this one replaces (it
        expires within ``LEASE_TTL_MS``); held longer, by someone else: an
        error, and the process ends.
        """
        deadline = self.clock.monotonic() + 2 * self.terms.ttl_s
        while True:
            try:
                await self.runtime.start(session_id)
                return
            except Conflict as exc:
                if exc.code != "session_owned_elsewhere" or self.clock.monotonic() > deadline:
                    raise ConfigError(
                        f"session {session_id!r} cannot run here: {exc.message}"
                    ) from None
            await self.clock.sleep(self.terms.renew_s)

    async def heartbeat(self) -> None:
        report = await self.services.health.report()
        status = "draining" if self.draining or self.ownership.draining else "online"
        body = heartbeat_body(report, status=status, message_count=self._message_count())
        await self.backend.heartbeat(self.worker_id, body)
        try:
            await self.redis.mark_alive(self.worker_id, self.settings.cluster.worker_timeout_s)
        except StorageError as exc:
            log.warning("could not refresh the liveness key: %s", exc)

    def _message_count(self) -> int:
        stats = self.pipeline.stats
        return sum(sum(counts.values()) for counts in stats.values())

    # --- Liveness: the worker's row, read on every renewal ----------------------------------

    async def touch(self, worker_id: str, instance: str) -> bool:
        if not await self.workers.touch(worker_id, instance):
            return False
        row = await self.workers.get(worker_id)
        if row is not None and row.status is WorkerStatus.DRAINING and not self.draining:
            log.warning("the control plane drains this worker: handing every session over")
            self.draining = True
            self.ownership.draining = True
            self.on_exit()
        return True

    async def _taken_over(self) -> None:
        self.on_exit()


def worker_endpoint(settings: Settings) -> str:
    """How the control plane reaches this worker: WAGATE_WORKER_ENDPOINT, else host:port."""
    if settings.cluster.worker_endpoint:
        return settings.cluster.worker_endpoint.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.port}"


async def run(settings: Settings) -> None:
    """``wagate worker``: serve, register, run the leased sessions; on a signal, hand them over."""
    configure(settings.log_level)
    settings = for_the_fleet(settings)
    with bind(settings.host, settings.port, f"{settings.port_variable}, HOST") as sock:
        async with WorkerNode(settings) as node:
            http = Http(
                node.app(),
                sock,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
            )
            await http.start()
            node.on_exit = http.stop
            try:
                await node.join(worker_endpoint(settings))
            except BaseException:
                http.stop()
                await http.wait()
                raise
            log.info(
                "wagate worker %s serving on http://%s:%d (engine %s, up to %d sessions)",
                node.worker_id,
                settings.host,
                settings.port,
                node.engine.name,
                settings.worker.max_sessions,
            )
            await http.wait()
            node.draining = True
            await asyncio.shield(node.heartbeat())  # the control plane sees it drain at once
