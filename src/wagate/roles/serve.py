"""The all-in-one gateway as one service: database, engine, embedded worker, session service.

``async with Gateway(settings) as gw`` returns when everything is ready
(schema migrated, linked sessions resumed) and stops in order on exit: the
worker's runners first, then the engine, then the database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from wagate.clock import Clock, SystemClock
from wagate.control.sessions import SessionService
from wagate.engine.base import Engine
from wagate.errors import ConfigError
from wagate.ingest.service import Ingest
from wagate.outbound.link_preview import LinkPreviewer
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.sender import Sender, SendPolicy
from wagate.outbound.service import OutboundService
from wagate.settings import Settings, variable
from wagate.storage.blobs import BlobStore, S3BlobStore, blob_store
from wagate.storage.db import Database, create_engine, migrate
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.outbound import OutboundRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.spool import MediaSpool
from wagate.webhooks.events import EventSink
from wagate.webhooks.outbox import Webhooks
from wagate.webhooks.session_events import StatusEvents
from wagate.worker.host import Worker

if TYPE_CHECKING:
    from wagate.sandbox import SandboxNetwork

log = logging.getLogger(__name__)


class Gateway:
    """Control plane and one embedded worker in one process (``wagate serve``)."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, engine: Engine | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self._given_engine = engine
        self._stack = contextlib.AsyncExitStack()
        self.sandbox_network: SandboxNetwork | None = None  # the in-process sandbox, if any

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
        s = self.settings
        make_dirs(s)
        self.api_key, created = load_or_create_api_key(s)
        self.api_key_created = created
        await migrate(s.sqlalchemy_url)
        self.db = Database(
            create_engine(s.sqlalchemy_url, sqlite_busy_timeout_ms=s.sqlite_busy_timeout_ms)
        )
        self._stack.push_async_callback(self.db.aclose)
        self.audit = AuditRepo(self.db, self.clock)
        self.engine = self._given_engine or self._build_engine()
        self._stack.push_async_callback(self.engine.aclose)
        # the outbox leaves after the worker, so the last lifecycle events are still recorded
        self.webhooks = await self._stack.enter_async_context(Webhooks(s, self.db, self.clock))
        self.sink: EventSink = self.webhooks.outbox
        # session.* events are written in the transaction of the state they report
        self.sessions = SessionRepo(self.db, self.clock, on_write=StatusEvents(self.sink))
        self.blobs = await self._open_blobs()
        # all-in-one: the embedded worker is the only one, so every session is its own
        self.worker = Worker(
            s,
            engine=self.engine,
            sessions=self.sessions,
            audit=self.audit,
            clock=self.clock,
            only_worker=True,
        )
        self.ingest = Ingest(
            s,
            db=self.db,
            clock=self.clock,
            worker=self.worker,
            audit=self.audit,
            sink=self.sink,
            blobs=self.blobs,
        )
        # the worker resumes sessions on entry: their events must already have a route
        await self._stack.enter_async_context(self.ingest)
        self._build_outbound()
        await self._stack.enter_async_context(self.sender)
        await self._stack.enter_async_context(self.worker)
        self.service = SessionService(
            self.sessions,
            self.worker,
            self.clock,
            engine=self.engine.name,
            worker_id=s.worker_id,
            connect_wait_s=s.connect_wait_ms / 1000,
        )

    def _build_outbound(self) -> None:
        """The send queue: the API's service and the worker's sender (after ``self.ingest``)."""
        s = self.settings
        repo = OutboundRepo(self.db, self.clock)
        spool = MediaSpool(s.data_dir / "outbox", inline_max_bytes=s.outbox_inline_max_bytes)
        self.sender = Sender(
            repo,
            spool,
            links=self.worker.link,
            sink=self.sink,
            clock=self.clock,
            policy=SendPolicy.of(s),
            prepare=LinkPreviewer.of(s).attach,  # at send time: the API never waits for a page
        )
        self.worker.subscribe(self.sender.on_change)
        self.ingest.on_receipt = self.sender.on_receipt
        fetcher = MediaFetcher(
            max_bytes=s.send_media_max_bytes,
            timeout_s=s.media_fetch_timeout_ms / 1000,
            max_redirects=s.media_fetch_max_redirects,
            allow_private=s.allow_private_urls,
        )
        self.outbound = OutboundService(
            repo, self.sessions, spool, fetcher, self.clock, wake=self.sender.wake
        )

    async def _open_blobs(self) -> BlobStore:
        store = blob_store(self.settings)
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

        if s.sandbox_url:
            return SandboxEngine(
                url=sandbox_ws_url(s.sandbox_url),
                key=s.sandbox_key,
                open_timeout_s=s.sandbox_open_timeout_ms / 1000,
                close_timeout_s=s.sandbox_close_timeout_ms / 1000,
                request_timeout_s=s.sandbox_request_timeout_ms / 1000,
            )
        network = SandboxNetwork(
            timings=SandboxTimings(
                qr_first_s=s.sandbox_qr_first_ms / 1000,
                qr_next_s=s.sandbox_qr_next_ms / 1000,
                qr_count=s.sandbox_qr_count,
            ),
            state_path=s.sandbox_state_file,
        )
        self.sandbox_network = network
        self._stack.push_async_callback(network.aclose)
        return SandboxEngine(network=network, request_timeout_s=s.sandbox_request_timeout_ms / 1000)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return key, True


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
