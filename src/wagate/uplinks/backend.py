"""Seed 002's worker → backend calls that keep a worker known: register, then heartbeat.

Verbatim from the seed: ``POST {BACKEND_URL}/api/v1/workers/register
{workerId, endpoint, maxSessions, description}`` once at start (a failure
ends the start with one line), then every ``HEARTBEAT_INTERVAL_MS`` (30 s)
``PUT {BACKEND_URL}/api/v1/workers/{id}/heartbeat {status, sessionCount,
cpuUsage, memoryUsage, uptime, messageCount}`` (a failure is logged, never
fatal), each with ``Authorization: Bearer {WORKER_AUTH_TOKEN}``. The body
of a registration also carries ``instance``, this process's own id, so the
control plane can refuse a second live process under the same worker id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from wagate.errors import ConfigError

log = logging.getLogger(__name__)

Figures = Callable[[], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Registration:
    worker_id: str
    endpoint: str
    max_sessions: int
    description: str
    instance: str

    def body(self) -> dict[str, Any]:
        return {
            "workerId": self.worker_id,
            "endpoint": self.endpoint,
            "maxSessions": self.max_sessions,
            "description": self.description,
            "instance": self.instance,
        }


class Backend:
    """The control plane as a worker sees it (``BACKEND_URL``)."""

    def __init__(self, base_url: str, token: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def register(self, registration: Registration) -> dict[str, Any]:
        """Register; a refusal or no answer is a ConfigError naming BACKEND_URL (start fails)."""
        url = f"{self.base_url}/api/v1/workers/register"
        try:
            answer = await self._client.post(url, json=registration.body(), headers=self._headers)
        except httpx.HTTPError as exc:
            raise ConfigError(
                f"cannot register worker {registration.worker_id!r} with the control plane "
                f"at BACKEND_URL={self.base_url}: {type(exc).__name__}: {exc}"
            ) from None
        if answer.status_code >= 300:
            raise ConfigError(
                f"the control plane at BACKEND_URL={self.base_url} refused worker "
                f"{registration.worker_id!r}: {answer.status_code} {_why(answer)}"
            )
        data: dict[str, Any] = answer.json()
        return data

    async def heartbeat(self, worker_id: str, figures: Mapping[str, Any]) -> bool:
        """One heartbeat; False (logged) when it did not get through."""
        url = f"{self.base_url}/api/v1/workers/{worker_id}/heartbeat"
        try:
            answer = await self._client.put(url, json=dict(figures), headers=self._headers)
        except httpx.HTTPError as exc:
            log.warning("heartbeat failed: %s: %s", type(exc).__name__, exc)
            return False
        if answer.status_code >= 300:
            log.warning("heartbeat refused: %s %s", answer.status_code, _why(answer))
            return False
        return True


def heartbeat_body(health: Mapping[str, Any], *, status: str, message_count: int) -> dict[str, Any]:
    """Seed 002's heartbeat body from the worker's own health report (its ``data``)."""
    data = health.get("data", {})
    return {
        "status": status,
        "sessionCount": data.get("sessionCount", 0),
        "cpuUsage": data.get("cpuUsage", 0.0),
        "memoryUsage": data.get("memoryUsage", 0.0),
        "uptime": data.get("uptime", 0),
        "messageCount": message_count,
    }


def _why(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return f"{error.get('code', 'error')}: {error.get('message', '')}"[:300]
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]
