"""Request dependencies: the API key check, and one ``Annotated`` alias per service.

Routes receive the control plane's services (:class:`wagate.control.services.Services`)
and nothing else: no repository, no worker, no process.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from wagate.control.admins import AdminAuth
from wagate.control.edge import EdgeBackend
from wagate.control.groups import GroupService
from wagate.control.health import HealthService
from wagate.control.media import MediaService
from wagate.control.messages import MessageService
from wagate.control.registry import WorkerRegistry
from wagate.control.runtime import SessionRuntime
from wagate.control.services import Services
from wagate.control.session_reports import SessionReports
from wagate.control.sessions import SessionService
from wagate.errors import NotConfigured, Unauthorized, WorkerUnavailable
from wagate.outbound.service import SendService
from wagate.settings import SendSettings
from wagate.webhooks.admin import WebhookAdmin

_api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def require_key(
    request: Request,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept the key as ``X-Api-Key: <key>`` or ``Authorization: Bearer <key>``."""
    given = _given_key(header_key, bearer)
    if not given:
        raise Unauthorized("missing API key: send X-Api-Key or Authorization: Bearer")
    if not _is_api_key(request, given):
        raise Unauthorized("wrong API key")


def _given_key(header_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return header_key or (bearer.credentials if bearer else None)


def _is_api_key(request: Request, given: str) -> bool:
    expected: str = request.app.state.api_key
    return hmac.compare_digest(given.encode(), expected.encode())


def _sessions(request: Request) -> SessionService:
    return services(request).sessions


def _messages(request: Request) -> MessageService:
    return services(request).messages


def _sending(request: Request) -> SendService:
    return services(request).sending


def _groups(request: Request) -> GroupService:
    return services(request).groups


def _media(request: Request) -> MediaService:
    return services(request).media


def _webhooks(request: Request) -> WebhookAdmin:
    return services(request).webhooks


def _health(request: Request) -> HealthService:
    return services(request).health


def _send_settings(request: Request) -> SendSettings:
    return services(request).send_settings


def _runtime(request: Request) -> SessionRuntime:
    runtime = services(request).runtime
    if runtime is None:  # the router is mounted only with a runtime: this is a wiring bug
        raise WorkerUnavailable("this process runs no sessions")
    return runtime


def _reports(request: Request) -> SessionReports:
    reports = services(request).reports
    if reports is None:
        raise NotConfigured("this process takes no session reports from workers")
    return reports


def _registry(request: Request) -> WorkerRegistry:
    found = services(request).registry
    if found is None:
        raise NotConfigured("this process keeps no registry of workers (`wagate control` does)")
    return found


def _admins(request: Request) -> AdminAuth:
    found = services(request).admins
    if found is None:
        raise NotConfigured("this process has no admin users (`wagate control` has)")
    return found


def _edge(request: Request) -> EdgeBackend:
    found = services(request).edge
    if found is None:  # the router is mounted only with one: this is a wiring bug
        raise NotConfigured("WORKER_SECRET is not set: the worker-proxy is off")
    return found


Sessions = Annotated[SessionService, Depends(_sessions)]
Messages = Annotated[MessageService, Depends(_messages)]
Sending = Annotated[SendService, Depends(_sending)]
Groups = Annotated[GroupService, Depends(_groups)]
Media = Annotated[MediaService, Depends(_media)]
Webhooks = Annotated[WebhookAdmin, Depends(_webhooks)]
Health = Annotated[HealthService, Depends(_health)]
SendLimits = Annotated[SendSettings, Depends(_send_settings)]
Runtime = Annotated[SessionRuntime, Depends(_runtime)]
Reports = Annotated[SessionReports, Depends(_reports)]
Registry = Annotated[WorkerRegistry, Depends(_registry)]
Admins = Annotated[AdminAuth, Depends(_admins)]
Edge = Annotated[EdgeBackend, Depends(_edge)]


def require_worker(
    registry: Registry,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A worker's call (seed 002): ``Authorization: Bearer <WORKER_AUTH_TOKEN>``."""
    registry.authenticate(bearer.credentials if bearer else None)


async def require_admin(
    request: Request,
    admins: Admins,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """An admin's call: a JWT from ``POST /api/v1/auth/login``, or the API key; who it is."""
    given = _given_key(header_key, bearer)
    if not given:
        raise Unauthorized(
            "missing token: send Authorization: Bearer with a token of POST /api/v1/auth/login"
        )
    if _is_api_key(request, given):
        return "api-key"
    if header_key:  # X-Api-Key carries the key, never a token
        raise Unauthorized("wrong API key")
    return await admins.verify(given)
