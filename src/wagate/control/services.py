"""The control plane's façade: every service the API and the dashboard use, in one place.

A role builds it (``roles/serve.py``) and hands it to the web app; routes get
each service through one ``Annotated`` dependency (``api/deps.py``) and never
touch a repository or the process that runs the sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from wagate.control.admins import AdminAuth
from wagate.control.edge import EdgeBackend
from wagate.control.groups import GroupService
from wagate.control.health import HealthService
from wagate.control.media import MediaService
from wagate.control.messages import MessageService
from wagate.control.proxy_pool import ProxyPool
from wagate.control.registry import WorkerRegistry
from wagate.control.runtime import SessionRuntime
from wagate.control.session_reports import SessionReports
from wagate.control.sessions import SessionService
from wagate.outbound.service import SendService
from wagate.settings import SendSettings
from wagate.webhooks.admin import WebhookAdmin


@dataclass(frozen=True, slots=True)
class Services:
    sessions: SessionService
    messages: MessageService
    sending: SendService
    groups: GroupService
    media: MediaService
    webhooks: WebhookAdmin
    health: HealthService
    send_settings: SendSettings  # limits the API checks before a body is read
    # a fleet worker's runtime, served to its control plane at /internal (request proxying)
    runtime: SessionRuntime | None = None
    # workers' reports of their sessions (seed 002's status, seed 004's /webhook); None: off
    reports: SessionReports | None = None
    # the control plane's fleet (seed 002's backend); the app serves its routes when set
    registry: WorkerRegistry | None = None
    admins: AdminAuth | None = None
    # seed 001's worker-proxy for edge workers (WORKER_SECRET); the app serves it when set
    edge: EdgeBackend | None = None
    # seed 004's proxy pool (/api/v1/proxies)
    proxies: ProxyPool | None = None
