"""The FastAPI application: routes, the error table, the key check, the in-process sandbox.

Without a key only health (``/``, ``/health``, ``/healthz``, ``/sandbox/healthz``)
and the API's description (``/openapi.json``, ``/docs``) answer, and, in a control
plane that takes workers' reports, ``/webhook`` (signed) and
``/api/webhooks/session-status`` (the worker token), and with ``WORKER_SECRET``
seed 001's worker-proxy under ``EDGE_PREFIX`` (that secret); the in-process
sandbox's control API and websocket want the gateway's key, as a keyed
``wagate sandbox`` server wants its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from wagate import __version__
from wagate.api import errors
from wagate.api.compat import seed001_edge, seed002_backend, seed002_backend_status, seed004
from wagate.api.deps import require_key
from wagate.api.nul import reject_nul
from wagate.api.routes import (
    groups,
    health,
    media,
    messages,
    proxies,
    runtime,
    seed002,
    sessions,
    webhooks,
)
from wagate.control.services import Services

if TYPE_CHECKING:
    from wagate.sandbox import SandboxNetwork


def create_app(
    services: Services, *, api_key: str, sandbox: SandboxNetwork | None = None
) -> FastAPI:
    """The API over ``services``; ``sandbox``: an in-process network, served under ``/sandbox``."""
    app = FastAPI(
        title="wagate",
        version=__version__,
        summary="Self-hosted multi-session WhatsApp gateway",
        docs_url="/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,  # no OAuth2 here: one public page fewer
        dependencies=[Depends(reject_nul)],  # every route, whoever adds it
    )
    app.state.services = services
    app.state.api_key = api_key
    errors.install(app)
    keyed = [Depends(require_key)]
    app.include_router(health.router)
    if services.reports is not None:  # workers' reports: their own credentials, not the key
        app.include_router(seed004.router)
        app.include_router(seed002_backend_status.router)
    if services.edge is not None:  # seed 001's edge workers: WORKER_SECRET, not the key
        app.include_router(seed001_edge.router, prefix=services.edge.prefix)
    app.include_router(sessions.router, dependencies=keyed)
    app.include_router(seed002.router, dependencies=keyed)
    app.include_router(groups.router, dependencies=keyed)
    app.include_router(media.router, dependencies=keyed)
    app.include_router(messages.router, dependencies=keyed)
    app.include_router(webhooks.router, dependencies=keyed)
    if services.proxies is not None:  # seed 004's proxy pool
        app.include_router(proxies.router, dependencies=keyed)
    if services.runtime is not None:  # a fleet worker: its control plane proxies to it
        app.include_router(runtime.router, dependencies=keyed)
    if services.registry is not None:  # a control plane: seed 002's backend
        app.include_router(seed002_backend.worker_router)
        app.include_router(seed002_backend.auth_router)
        app.include_router(seed002_backend.admin_router)
    if sandbox is not None:
        from wagate.sandbox.server import create_app as sandbox_app

        app.mount("/sandbox", sandbox_app(sandbox, control_token=api_key))
    return app
