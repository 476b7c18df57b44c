"""``wagate worker --uplink edge``: seed 001's edge worker, a drop-in for its ``wa-worker``.

Its composition root. No database, no Redis: the worker-proxy at
``EDGE_BASE_URL`` says which instances to connect and takes what happens to
them (``uplinks/edge_host.py``). What must survive a restart lives under
``/data`` (the seed's volume): the credentials in ``AUTH_DIR/<instance>``
and the edge spool (``DATA_DIR/edge-spool.sqlite3``: reports not yet taken,
messages already sent)::

    engine ─ edge spool ─ courier (/inbound, /mark-sent) ─ status reports
    worker over a MemoryRecord ◄─ EdgeHost (handler, listener, polls) ─ HTTP /health

Leaving, in reverse: the host stops every session and reports each
``DISCONNECTED``; the status reports get their last try, the courier stops
(what it did not deliver stays spooled), the engine closes.
"""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from wagate.api.compat.seed001_worker import edge_worker_app
from wagate.errors import ConfigError
from wagate.lifecycle import Periodic
from wagate.logs import configure
from wagate.outbound.media_fetch import MediaFetcher
from wagate.outbound.sender import SendPolicy
from wagate.roles.node import Node, engine_figures
from wagate.serving import bind, serve_http
from wagate.settings import Settings
from wagate.storage.auth_state import FileAuthStore
from wagate.storage.edge_spool import EdgeSpool
from wagate.uplinks.edge import EdgeClient
from wagate.uplinks.edge_host import EdgeHost
from wagate.uplinks.edge_reports import Courier, StatusReports
from wagate.uplinks.edge_sends import Sends
from wagate.worker.host import Worker
from wagate.worker.record import MemoryRecord

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

DEFAULT_PORT = 3000  # seed 001
DEFAULT_DATA = Path("/data")  # seed 001's volume; AUTH_DIR is /data/auth
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,58}$")  # X-Wagate-Worker
FORGET_EVERY_S = 3600.0


def wants_edge(settings: Settings) -> bool:
    """``--uplink edge`` (``WAGATE_UPLINK=edge``), or ``EDGE_BASE_URL`` with no ``DATABASE_URL``."""
    if settings.uplink is not None:
        return settings.uplink == "edge"
    return bool(settings.edge_base_url) and not settings.database_url


def for_the_edge(settings: Settings) -> Settings:
    """Seed 001's defaults where nothing was set: port 3000, ``/data``, ``/data/auth``."""
    given = settings.model_fields_set
    update: dict[str, Any] = {"auth_store": "files"}
    if "port" not in given and settings.worker_port is None:
        update["port"] = DEFAULT_PORT
    if "host" not in given:  # a container's health check reaches it (it serves health only)
        update["host"] = "0.0.0.0"
    if "data_dir" not in given:
        update["data_dir"] = DEFAULT_DATA
    if "auth_dir" not in given:
        update["auth_dir"] = update.get("data_dir", settings.data_dir) / "auth"
    if "worker_id" not in given:
        update["worker_id"] = worker_name(socket.gethostname())
    return settings.model_copy(update=update)


def worker_name(hostname: str) -> str:
    """A host name as a worker's name in ``X-Wagate-Worker`` (1-59 of A-Z a-z 0-9 _ . : -)."""
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", hostname).lstrip("_.:-")[:59]
    return name or "edge-worker"


def edge_settings(settings: Settings) -> None:
    """A ConfigError naming the first thing an edge worker lacks."""
    if not settings.edge_base_url:
        raise ConfigError(
            "wagate worker --uplink edge needs EDGE_BASE_URL (the worker-proxy's base URL, "
            "e.g. https://<project>.supabase.co/functions/v1/worker-proxy)"
        )
    if not settings.edge_base_url.startswith(("http://", "https://")):
        raise ConfigError("EDGE_BASE_URL must be an http:// or https:// URL")
    if not settings.worker_secret:
        raise ConfigError(
            "wagate worker --uplink edge needs WORKER_SECRET (sent as Authorization: Bearer)"
        )
    if not WORKER_NAME.fullmatch(settings.worker_id):
        raise ConfigError(
            f"WORKER_ID {settings.worker_id[:80]!r} cannot name an edge worker: use 1-59 "
            "characters from A-Z a-z 0-9 _ . : -, starting with a letter or digit"
        )
    for path, name in ((settings.data_dir, "DATA_DIR"), (settings.auth_root, "AUTH_DIR")):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {name} folder {path}: {exc.strerror or exc}; "
                "an edge worker keeps its state under /data by default: mount a volume "
                "there, or set DATA_DIR and AUTH_DIR"
            ) from None


class EdgeNode(Node):
    """An edge worker's parts; ``async with`` returns once it polls."""

    async def _start(self) -> None:
        s = self.settings
        edge_settings(s)
        view = s.edge
        assert view.base_url is not None and view.secret is not None
        self.api_key = ""  # no API: the worker-proxy is its only interface
        self.engine = self._given_engine or self._build_engine()
        self._stack.push_async_callback(self.engine.aclose)
        self.http = httpx.AsyncClient(timeout=view.request_timeout_s)
        self._stack.push_async_callback(self.http.aclose)
        self.client = EdgeClient(view.base_url, view.secret, view.worker_id, client=self.http)
        self.record = MemoryRecord(self.clock)
        self.edge_spool = await self._stack.enter_async_context(EdgeSpool(view.spool_path))
        courier = Courier(
            self.edge_spool, self.client, audit=self.record, clock=self.clock, retry=view.retry
        )
        self.courier = await self._stack.enter_async_context(courier)
        self.host = EdgeHost(
            client=self.client,
            record=self.record,
            spool=self.edge_spool,
            courier=self.courier,
            clock=self.clock,
            engine_name=self.engine.name,
            max_sessions=s.worker.max_sessions,
            instance_poll_s=view.instance_poll_s,
            max_media_bytes=s.ingest.max_media_bytes,
            stop_timeout_s=s.worker.stop_timeout_s,
        )
        status = StatusReports(
            self.client,
            clock=self.clock,
            retry=view.retry,
            on_refused=self.host.let_go,
            on_sent=self.host.renewed,
        )
        self.host.status = await self._stack.enter_async_context(status)
        self.host.sends = self._sends(view.msg_poll_s)
        root = s.auth_root
        worker = Worker(
            s.worker,
            engine=self.engine,
            sessions=self.record,
            audit=self.record,
            clock=self.clock,
            handler=self.host,
            auth=lambda session_id: FileAuthStore(root, session_id),
            resume=False,  # the worker-proxy says what to run
            listeners=[*self._listeners, self.host.on_change],
        )
        self.host.worker = await self._stack.enter_async_context(worker)
        forget = Periodic("edge-forget-sends", self._forget_sends, FORGET_EVERY_S, self.clock)
        await self._stack.enter_async_context(forget)
        await self._stack.enter_async_context(self.host)

    def _sends(self, poll_s: float) -> Sends:
        send = self.settings.send
        fetcher = MediaFetcher(
            max_bytes=send.media_max_bytes,
            timeout_s=send.media_fetch_timeout_s,
            max_redirects=send.media_fetch_max_redirects,
            allow_private=send.allow_private_urls,
        )
        return Sends(
            self.client,
            self.edge_spool,
            self.courier,
            clock=self.clock,
            poll_s=poll_s,
            policy=SendPolicy.of(send),
            fetcher=fetcher,
            on_refused=self.host.let_go,
            on_renewed=self.host.renewed,
            spawn=self.host.tasks.spawn,
        )

    async def _forget_sends(self) -> None:
        forgotten = await self.edge_spool.forget_sends(
            self.settings.edge.sent_memory.total_seconds()
        )
        if forgotten:
            log.info("forgot %d settled send(s) older than EDGE_SENT_MEMORY_MS", forgotten)

    def app(self) -> FastAPI:
        """Seed 001's health check at ``/`` and ``/health``; nothing else."""
        return edge_worker_app(self.health)

    async def health(self) -> dict[str, Any]:
        body = await self.host.health()
        body["worker"] = self.settings.worker.worker_id
        body["engine"] = engine = engine_figures(self.engine)
        if engine.get("needsRestart"):
            body["status"] = "degraded"
        return body


async def run(settings: Settings) -> None:
    """``wagate worker --uplink edge``: poll the worker-proxy, run its instances, until a signal."""
    configure(settings.log_level)
    settings = for_the_edge(settings)
    with bind(settings.host, settings.port, f"{settings.port_variable}, HOST") as sock:
        async with EdgeNode(settings) as node:
            log.info(
                "wagate edge worker %s on http://%s:%d, polling %s (engine %s, up to %d sessions)",
                settings.worker_id,
                settings.host,
                settings.port,
                node.client.base_url,
                node.engine.name,
                settings.worker.max_sessions,
            )
            await serve_http(
                node.app(),
                sock,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
            )
