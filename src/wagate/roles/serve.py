"""``wagate serve``: the control plane and one embedded worker in one process.

This module is the composition root of that process: the only place that
knows every part and how they are tied. It builds them in dependency order,
each given its collaborators and its settings view, and enters the services
so that they stop in the reverse order::

    database ─ outbox ─ repositories
    engine                               (closed after every part that uses it)
    webhook dispatcher                   (stops last: the final events still go out)
    ingest ◄─┐
    sender ◄─┴─ EventRoutes ◄─ worker    (the worker stops first: links drained,
    runtime flags (Periodic)               every received event stored)

The path of a message reads in the calls: a send goes API → ``SendService``
→ queued row → ``Sender`` → link → status and ``message.*`` event; a received
message goes engine → ``SessionRunner`` → ``EventRoutes`` → ``Ingest`` → row,
media, ``message.received`` event → ``WebhookDispatcher``.
"""

from __future__ import annotations

import dataclasses
import logging

from wagate.control.flags import FlagWatcher
from wagate.control.runtime import LocalRuntime
from wagate.control.session_reports import SessionReports
from wagate.lifecycle import Periodic
from wagate.logs import configure
from wagate.roles.node import Node, load_or_create_api_key, make_dirs
from wagate.serving import bind, serve_http
from wagate.settings import Settings
from wagate.worker.events import EventRoutes
from wagate.worker.host import Worker

__all__ = ["Gateway", "make_dirs", "run"]

log = logging.getLogger(__name__)


class Gateway(Node):
    """The all-in-one process; ``async with Gateway(settings) as gw`` returns when it is ready.

    Ready means: schema migrated, every part started, linked sessions
    resumed. Its parts stay readable as attributes (tools and tests look at
    them); the API is given only :attr:`services`.
    """

    async def _start(self) -> None:
        s = self.settings
        make_dirs(s)
        self.api_key, self.api_key_created = load_or_create_api_key(s)
        await self._open_storage()
        self.engine = self._given_engine or self._build_engine()
        self._stack.push_async_callback(self.engine.aclose)
        self.blobs = await self._open_blobs()
        await self._start_webhooks()
        await self._start_ingest()
        await self._start_outbound()
        await self._start_proxy_pool()
        await self._start_worker()
        services = self._services(self.runtime, engine_name=self.engine.name)
        # WORKER_SECRET: seed 001's edge workers host the sessions provisioned for them
        reports = SessionReports(
            self.sessions, self.audit, self.clock, qr_expiry=s.worker.qr_expiry
        )
        self.services = dataclasses.replace(services, edge=self._edge_backend(reports))

    async def _start_worker(self) -> None:
        view = self.settings.worker
        worker = Worker(
            view,
            engine=self.engine,
            sessions=self.sessions,
            audit=self.audit,
            clock=self.clock,
            handler=EventRoutes(inbound=self.ingest, outbound=self.sender),
            auth=self._auth_factory(),
            # all-in-one: the embedded worker is the only one, so every session is its own
            only_worker=True,
            proxy_failover=self.proxy_pool.failover if self.proxy_pool else None,
            listeners=[*self._listeners, *self._pool_listeners()],
        )
        self.worker = await self._stack.enter_async_context(worker)
        self.runtime = LocalRuntime(self.worker)
        self.flag_watcher = FlagWatcher(
            self.flags, self.runtime, self.audit, discover=self.ingest.discover
        )
        polling = Periodic("runtime-flags", self.flag_watcher.poll, view.flag_poll_s, self.clock)
        await self._stack.enter_async_context(polling)


async def run(settings: Settings) -> None:
    """``wagate serve``: the gateway and its API until SIGINT/SIGTERM, then an ordered stop."""
    configure(settings.log_level)
    # bound before anything starts: a port in use stops start-up with one line
    with bind(settings.host, settings.port, f"{settings.port_variable}, HOST") as sock:
        async with Gateway(settings) as gateway:
            if gateway.api_key_created:
                # printed once, at the start that created it; it stays in the data dir
                print(
                    f"wagate: generated an API key (stored in {settings.api_key_file}):\n"
                    f"  {gateway.api_key}",
                    flush=True,
                )
            app = gateway.app()
            log.info(
                "wagate serving on http://%s:%d (engine %s, worker %s)",
                settings.host,
                settings.port,
                gateway.engine.name,
                settings.worker_id,
            )
            await serve_http(
                app, sock, host=settings.host, port=settings.port, log_level=settings.log_level
            )
