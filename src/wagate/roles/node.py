"""What every process of wagate is built from: one :class:`Node` per process, its parts.

A role (``serve``, ``worker``, ``control``) is a subclass whose ``_start``
enters the parts it runs, in dependency order, onto one exit stack, so they
stop in the reverse order. The parts are built here, each given its
collaborators and its settings view; a role only chooses and ties them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from wagate.api.app import create_app
from wagate.clock import Clock, SystemClock
from wagate.control.edge import EdgeBackend, FleetIdle
from wagate.control.groups import GroupService
from wagate.control.health import FleetFigures, HealthService
from wagate.control.media import MediaService
from wagate.control.messages import MessageService
from wagate.control.proxy_pool import ProxyPool
from wagate.control.proxy_probe import DEFAULT_TARGET, socks_probe
from wagate.control.runtime import SessionRuntime
from wagate.control.services import Services
from wagate.control.session_reports import SessionReports
from wagate.control.sessions import SessionService
from wagate.domain.lease import Fences
from wagate.engine.base import AuthStore, Engine
from wagate.errors import ConfigError
from wagate.files import write_atomic
from wagate.ingest.groups import GroupSync
from wagate.ingest.media import MediaStore
from wagate.ingest.pipeline import IngestPipeline
from wagate.ingest.service import Ingest
from wagate.lifecycle import Periodic
from wagate.outbound.link_preview import LinkPreviewer
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.sender import Sender, SendPolicy
from wagate.outbound.service import SendService
from wagate.settings import Settings, variable
from wagate.storage.auth_state import DatabaseAuthStore, FileAuthStore
from wagate.storage.blobs import BlobStore, S3BlobStore, blob_store
from wagate.storage.db import Database, create_engine, migrate
from wagate.storage.outbox import Outbox
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.flags import FlagRepo
from wagate.storage.repos.groups import GroupRepo
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.media import MediaRepo
from wagate.storage.repos.messages import MessageRepo
from wagate.storage.repos.outbound import OutboundRepo
from wagate.storage.repos.proxies import ProxyRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.repos.webhooks import DeliveryRepo, SubscriptionRepo
from wagate.storage.spool import MediaSpool
from wagate.webhooks.admin import WebhookAdmin
from wagate.webhooks.dispatcher import WebhookDispatcher
from wagate.webhooks.events import session_events
from wagate.worker.host import Listener

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wagate.sandbox import SandboxNetwork

log = logging.getLogger(__name__)


class Node:
    """One process's parts on one exit stack; ``async with`` returns when the role is ready."""

    # set by the role's ``_start``, before anything reads them
    api_key: str
    blobs: BlobStore
    services: Services
    spool: MediaSpool | None = None
    proxy_pool: ProxyPool | None = None  # seed 004's, where the role runs one
    instance: str | None = None  # a fleet process's own id (its worker id may outlive it)

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        listeners: Sequence[Listener] = (),
        outbox_type: type[Outbox] = Outbox,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._given_engine = engine
        self._listeners = listeners  # who else hears each session change (tools, tests)
        self._outbox_type = outbox_type  # a recording outbox, for tests
        self._stack = contextlib.AsyncExitStack()
        self.sandbox_network: SandboxNetwork | None = None  # the in-process sandbox, if any
        # a fleet worker's leases: its owner-only writes and its sends are fenced by them
        self.fences: Fences | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _open_storage(self) -> None:
        s, clock = self.settings, self.clock
        await migrate(s.storage.sqlalchemy_url)
        self.db = Database(
            create_engine(
                s.storage.sqlalchemy_url, sqlite_busy_timeout_s=s.storage.sqlite_busy_timeout_s
            )
        )
        self._stack.push_async_callback(self.db.aclose)
        self.doorbell = asyncio.Event()  # rung when deliveries commit: the dispatcher wakes
        self.outbox = self._outbox_type(self.db, clock, on_commit=self.doorbell.set)
        self.sessions = SessionRepo(
            self.db, clock, outbox=self.outbox, announce=session_events, fences=self.fences
        )
        self.audit = AuditRepo(self.db, clock)
        self.messages = MessageRepo(self.db, clock, outbox=self.outbox)
        self.outbound = OutboundRepo(self.db, clock, outbox=self.outbox, fences=self.fences)
        self.groups = GroupRepo(self.db, clock, outbox=self.outbox)
        self.flags = FlagRepo(self.db, clock)

    async def _start_webhooks(self, *, dispatch: bool = True) -> None:
        """Entered before the worker, so the last lifecycle events still go out.

        Without ``dispatch`` (a fleet worker) the events are only written: the
        control plane's dispatchers deliver them.
        """
        view = self.settings.webhooks
        deliveries = DeliveryRepo(self.db, self.clock)
        subscriptions = SubscriptionRepo(self.db, self.clock)
        self.webhooks = WebhookAdmin(view, subscriptions, deliveries, wake=self.doorbell.set)
        if dispatch:
            dispatcher = WebhookDispatcher(view, deliveries, self.clock, wakeup=self.doorbell)
            self.dispatcher = await self._stack.enter_async_context(dispatcher)

    def _ingest_pipeline(self) -> IngestPipeline:
        """What stores received messages (engine events, an edge worker's posts)."""
        view, clock = self.settings.ingest, self.clock
        media = MediaStore(
            MediaRepo(self.db, clock),
            self.blobs,
            max_bytes=view.max_media_bytes,
            other_max_bytes=view.other_media_max_bytes,
            prefix=view.media_prefix,
            spool_dir=view.spool_dir,
        )
        return IngestPipeline(
            view,
            messages=self.messages,
            groups=self.groups,
            media=media,
            audit=self.audit,
            clock=clock,
        )

    async def _start_ingest(self) -> None:
        clock = self.clock
        self.pipeline = self._ingest_pipeline()
        ingest = Ingest(
            pipeline=self.pipeline,
            groups=GroupSync(self.groups, self.audit, clock),
            messages=self.messages,
            audit=self.audit,
            stop_timeout_s=self.settings.worker.stop_timeout_s,
        )
        self.ingest = await self._stack.enter_async_context(ingest)

    async def _start_outbound(self) -> None:
        view = self.settings.send
        sender = Sender(
            self.outbound,
            self._spool(),
            clock=self.clock,
            policy=SendPolicy.of(view),
            prepare=LinkPreviewer.of(view).attach,  # at send time: the API never waits for a page
            audit=self.audit,
            fences=self.fences,
        )
        self.sender = await self._stack.enter_async_context(sender)
        self.sending = self._send_service(wake=sender.wake)

    def _spool(self) -> MediaSpool:
        if self.spool is None:
            view = self.settings.send
            self.spool = MediaSpool(view.spool_dir, inline_max_bytes=view.inline_max_bytes)
        return self.spool

    def _send_service(self, *, wake: Callable[[str], None]) -> SendService:
        """What the API queues sends with; ``wake`` tells the session's sender there is one."""
        view = self.settings.send
        fetcher = MediaFetcher(
            max_bytes=view.media_max_bytes,
            timeout_s=view.media_fetch_timeout_s,
            max_redirects=view.media_fetch_max_redirects,
            allow_private=view.allow_private_urls,
        )
        return SendService(
            self.outbound, self.messages, self.sessions, self._spool(), fetcher, wake=wake
        )

    def _edge_backend(
        self, reports: SessionReports, *, fleet_idle: FleetIdle | None = None
    ) -> EdgeBackend | None:
        """Seed 001's worker-proxy, when ``WORKER_SECRET`` is set (None otherwise)."""
        c = self.settings.cluster
        if c.worker_secret is None:
            return None
        pipeline = getattr(self, "pipeline", None) or self._ingest_pipeline()
        return EdgeBackend(
            sessions=self.sessions,
            leases=SessionLeaseRepo(self.db, self.clock),
            outbound=self.outbound,
            spool=self._spool(),
            reports=reports,
            pipeline=pipeline,
            clock=self.clock,
            secret=c.worker_secret,
            groups=self.groups,
            claim_ttl=c.edge_claim_ttl,
            max_attempts=self.settings.send.max_attempts,
            fleet_idle=fleet_idle,
            prefix=c.edge_prefix,
            max_media_bytes=self.settings.ingest.max_media_bytes,
        )

    async def _start_proxy_pool(self, *, checks: bool = True) -> ProxyPool:
        """Seed 004's pool, with ``PROXY_URL_1..n`` added; ``checks``: this process runs the
        health checks (one process of a fleet does: its leader)."""
        view = self.settings.proxy_pool
        self.proxy_pool = ProxyPool(
            ProxyRepo(self.db, self.clock),
            self.sessions,
            self.audit,
            self.outbox,
            self.clock,
            check=socks_probe(view.probe or self._probe_target(), view.check_timeout_s),
            settings=view,
        )
        await self.proxy_pool.load(list(view.urls))
        if checks:
            checking = Periodic("proxy-checks", self.proxy_pool.check_due, view.tick_s, self.clock)
            await self._stack.enter_async_context(checking)
        return self.proxy_pool

    def _pool_listeners(self) -> list[Listener]:
        """The proxy pool hears each connect: the phone sticks to its proxy."""
        return [self.proxy_pool.on_change] if self.proxy_pool is not None else []

    def _probe_target(self) -> tuple[str, int]:
        """Where a proxy check connects: the sandbox server in sandbox mode, else WhatsApp."""
        s = self.settings
        if s.engine == "sandbox" and s.sandbox.url:
            parts = urlsplit(s.sandbox.url)
            if parts.hostname:
                return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        return DEFAULT_TARGET

    def _auth_factory(self) -> Callable[[str], AuthStore]:
        """Where credentials live: ``AUTH_DIR/<session>/`` files, or ``auth_state`` rows."""
        view, db, clock = self.settings.worker, self.db, self.clock
        if view.auth_store == "database":
            return lambda session_id: DatabaseAuthStore(db, clock, session_id)
        root = view.auth_root
        return lambda session_id: FileAuthStore(root, session_id)

    def app(self) -> FastAPI:
        """The HTTP API over this gateway's services (and its in-process sandbox, if any)."""
        return create_app(self.services, api_key=self.api_key, sandbox=self.sandbox_network)

    def _services(
        self,
        runtime: SessionRuntime,
        *,
        engine_name: str,
        fleet: FleetFigures | None = None,
        runs_sessions: bool = True,
    ) -> Services:
        """The façade over this process's parts; ``runs_sessions`` False: a control plane
        (a session it creates is no worker's until one takes it)."""
        s = self.settings
        return Services(
            sessions=SessionService(
                self.sessions,
                runtime,
                self.audit,
                self.clock,
                engine=engine_name,
                worker_id=s.worker.worker_id if runs_sessions else None,
                connect_wait_s=s.worker.connect_wait_s,
                proxy_pool=self.proxy_pool,
                max_sessions_per_phone=s.max_sessions_per_phone,
            ),
            messages=MessageService(self.messages, self.sessions),
            sending=self.sending,
            groups=GroupService(self.groups, self.flags, counters=self._group_counters),
            media=MediaService(MediaRepo(self.db, self.clock), self.blobs),
            webhooks=self.webhooks,
            health=HealthService(
                runtime,
                engine=self._engine_figures,
                worker_id=s.worker.worker_id,
                max_sessions=s.worker.max_sessions,
                instance=self.instance,
                fleet=fleet,
            ),
            send_settings=s.send,
            proxies=self.proxy_pool,
        )

    def _group_counters(self, session_id: str) -> dict[str, int]:
        pipeline = getattr(self, "pipeline", None)  # a control plane ingests nothing itself
        return dict(pipeline.stats.get(session_id, {})) if pipeline is not None else {}

    def _engine_figures(self) -> dict[str, object]:
        engine = getattr(self, "engine", None)
        return engine_figures(engine) if engine is not None else {"name": self.settings.engine}

    async def _open_blobs(self) -> BlobStore:
        store = blob_store(self.settings.storage)
        if isinstance(store, S3BlobStore):
            await self._stack.enter_async_context(store)
        return store

    def _build_engine(self) -> Engine:
        s = self.settings
        if s.engine == "neonize":
            # imported here: loading neonize loads its Go library, which sandbox runs never need
            from wagate.engine.neonize import NeonizeConfig, NeonizeEngine

            return NeonizeEngine(NeonizeConfig.from_settings(s.neonize, s.worker_max_sessions))
        from wagate.engine.sandbox import SandboxEngine
        from wagate.sandbox import SandboxNetwork, SandboxTimings

        view = s.sandbox
        if view.url:
            return SandboxEngine(
                url=sandbox_ws_url(view.url),
                key=view.key,
                client=s.worker.worker_id,  # the network lists each connection by its worker
                open_timeout_s=view.open_timeout_s,
                close_timeout_s=view.close_timeout_s,
                request_timeout_s=view.request_timeout_s,
            )
        network = SandboxNetwork(
            timings=SandboxTimings(
                qr_first_s=view.qr_first_s, qr_next_s=view.qr_next_s, qr_count=view.qr_count
            ),
            state_path=view.state_file,
            clock=self.clock,
        )
        self.sandbox_network = network
        self._stack.push_async_callback(network.aclose)
        return SandboxEngine(network=network, request_timeout_s=view.request_timeout_s)


def engine_figures(engine: object) -> dict[str, object]:
    """The engine's name, and its own figures when it reports any (neonize does)."""
    report = getattr(engine, "health", None)
    figures = report() if callable(report) else {}
    return {"name": getattr(engine, "name", "unknown"), **(figures or {})}


def sandbox_ws_url(base: str) -> str:
    """``http://host:port`` (the sandbox server's base URL) → ``ws://host:port/ws``."""
    base = base.rstrip("/")
    if base.startswith(("ws://", "wss://")):
        return base if base.endswith("/ws") else base + "/ws"
    scheme, _, rest = base.partition("://")
    return ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"


def make_dirs(settings: Settings) -> None:
    """Create the folders wagate writes to; one that cannot be is a ConfigError naming it."""
    s = settings
    dirs = [(s.data_dir, "data_dir"), (s.auth_root, "auth_dir" if s.auth_dir else "data_dir")]
    if s.blob_backend == "local":
        dirs.append((s.media_root, "media_dir" if s.media_dir else "data_dir"))
    for path, field in dirs:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {variable(field)} folder {path}: {_reason(exc)}"
            ) from None


def load_or_create_api_key(settings: Settings) -> tuple[str, bool]:
    """The configured ``API_KEY``; else the one stored under the data dir, made on first start."""
    if settings.api_key:
        return settings.api_key, False
    path: Path = settings.api_key_file
    try:
        return _stored_or_new_key(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the generated API key in {path} ({variable('data_dir')}): "
            f"{_reason(exc)}; set API_KEY or make the folder writable"
        ) from None


def _stored_or_new_key(path: Path) -> tuple[str, bool]:
    if path.exists():
        key = path.read_text("utf-8").strip()
        if key:
            return key, False
    key = "wg_" + secrets.token_urlsafe(32)
    write_atomic(path, (key + "\n").encode("utf-8"), mode=0o600)
    return key, True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# --- a fleet: what every process of it needs ---------------------------------------


def fleet_settings(settings: Settings, role: str) -> None:
    """A ConfigError naming the first setting a fleet process lacks."""
    c = settings.cluster
    needs = [
        ("DATABASE_URL", settings.database_url, "a PostgreSQL URL shared by the fleet"),
        ("REDIS_URL", c.redis_url, "the fleet's Redis"),
        ("API_KEY", settings.api_key, "the same key on every process of the fleet"),
        ("WORKER_AUTH_TOKEN", c.worker_auth_token, "the secret workers show the control plane"),
    ]
    if role == "worker":
        needs.append(("BACKEND_URL", c.backend_url, "the control plane's URL"))
    for name, value, what in needs:
        if not value:
            raise ConfigError(f"wagate {role} needs {name} ({what})")
    if not str(settings.database_url).startswith(("postgres://", "postgresql")):
        raise ConfigError(
            f"wagate {role} needs DATABASE_URL to be PostgreSQL (SQLite is one machine's)"
        )


def for_the_fleet(settings: Settings) -> Settings:
    """A fleet process's settings as a fleet needs them.

    ``WORKER_ID`` defaults to the host name (a Kubernetes pod's name), or
    ``session-<ID>`` for a session process (``--session ID``, one session at
    most); what a
    session needs lives where any worker can read it: its credentials in the
    database (``AUTH_STORE=database``, and neonize's own store in the main
    database unless ``WAGATE_NEONIZE_DATABASE_URL`` names another), its queued
    media in the queued row.
    """
    update: dict[str, Any] = {
        "auth_store": "database",
        # queued media rides in its row: any worker may be the one that sends it
        "outbox_inline_max_bytes": max(
            settings.outbox_inline_max_bytes, settings.send_media_max_bytes
        ),
    }
    if settings.session_id:  # a session process (seed 004): one session, its own worker id
        update["worker_max_sessions"] = 1
        if "worker_id" not in settings.model_fields_set:
            update["worker_id"] = f"session-{settings.session_id}"
    elif "worker_id" not in settings.model_fields_set:
        update["worker_id"] = socket.gethostname()
    if not settings.neonize_database_url:
        update["neonize_database_url"] = settings.database_url
    return settings.model_copy(update=update)
