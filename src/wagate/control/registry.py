"""The registry of workers (seed 002's backend): registration, heartbeats, the admin's verbs.

A worker id is held by one running process at a time. The wagate worker sends
a random ``instance`` per process with its registration; a foreign seed-002
worker sends none, and its instance is derived from its endpoint. A
registration by another instance while the holder still beats is refused
(409 ``worker_id_in_use``) when the holder's ``/health`` still answers as that
instance; otherwise the id is taken over, and the leases held under it are
fenced off (:meth:`WorkerRepo.register`).

The health monitor marks workers silent for ``WORKER_TIMEOUT_MS`` dead. Its
on/off switch is stored, so every control replica reports and obeys the same
one; the role runs :meth:`WorkerRegistry.monitor` on the leading replica only.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import Conflict, InvalidInput, NotConfigured, NotFound, Unauthorized
from wagate.ids import SESSION_ID_RULE, is_session_id
from wagate.lifecycle import Periodic
from wagate.netguard import InternalAddress, check_url, connect_guard, parse_http_url
from wagate.settings import ClusterSettings, variable
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.workers import MonitorSwitch, WorkerRepo

log = logging.getLogger(__name__)

Drain = Callable[[str], Awaitable[None]]

MAX_SESSIONS = 10_000
MAX_DESCRIPTION = 500
MAX_COUNT = 1_000_000
MAX_MESSAGES = 2**63 - 1
MAX_ENDPOINT = 2_048
_HEALTH_MAX_BYTES = 64 * 1024
_INSTANCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DERIVED = "ep:"  # a ':' no given instance can hold
# a heartbeat's status → the registry's; seed 002's workers say "online"
_BEAT_STATUS = {
    "online": WorkerStatus.LIVE,
    "live": WorkerStatus.LIVE,
    "draining": WorkerStatus.DRAINING,
}


@dataclass(frozen=True, slots=True)
class Registration:
    """Seed 002's registration body (``workerId``, ``endpoint``, …), plus wagate's ``instance``."""

    worker_id: str
    endpoint: str
    max_sessions: int
    description: str | None = None
    instance: str | None = None  # None: a foreign worker, known by its endpoint


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Seed 002's heartbeat body; a figure left out (None) keeps its last value."""

    status: str = "online"
    session_count: int | None = None
    cpu_usage: float | None = None
    memory_usage: float | None = None
    uptime: float | None = None  # seconds (Node's process.uptime() has decimals)
    message_count: int | None = None
    instance: str | None = None  # wagate's workers send it: a beat of a replaced process is refused


@dataclass(frozen=True, slots=True)
class NewWorker:
    """A worker an admin adds by hand (seed 002: ``endpoint``, ``maxSessions``, ``description``)."""

    endpoint: str
    max_sessions: int
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FleetStatistics:
    workers: dict[str, int]  # by status, and "total"
    capacity: int  # sessions the live workers can hold
    sessions: int  # sessions the live workers hold
    messages: int  # as the workers count them, every worker
    cpu_usage: float | None  # the live workers' average
    memory_usage: float | None

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.sessions)


@dataclass(frozen=True, slots=True)
class Probe:
    """The answer of a worker's ``GET /health``, or why there was none."""

    endpoint: str
    reachable: bool
    latency_ms: int | None = None
    status_code: int | None = None
    health: Any = None  # the worker's JSON body
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    enabled: bool
    interval_s: float
    timeout_s: float
    changed_at: datetime | None
    checked_at: datetime | None
    last_dead: tuple[str, ...]
    workers: dict[str, int] = field(default_factory=dict)


class WorkerRegistry:
    """The fleet's workers: what they report and what an admin does to them."""

    def __init__(
        self,
        workers: WorkerRepo,
        switch: MonitorSwitch,
        audit: AuditRepo,
        clock: Clock,
        settings: ClusterSettings,
        http: httpx.AsyncClient,
        *,
        on_drain: Drain | None = None,
    ) -> None:
        self._workers = workers
        self._switch = switch
        self._audit = audit
        self._clock = clock
        self.settings = settings
        self._http = http  # the role's; closed by it
        self._on_drain = on_drain

    # --- the worker-facing side --------------------------------------------------------

    def authenticate(self, token: str | None) -> None:
        """Check a worker's ``Authorization: Bearer`` token against ``WORKER_AUTH_TOKEN``."""
        expected = self.settings.worker_auth_token
        if not expected:
            name = variable("worker_auth_token")
            raise NotConfigured(f"{name} is not set on this control plane: workers cannot join")
        if not token:
            raise Unauthorized("missing worker token: send Authorization: Bearer")
        if not secrets.compare_digest(token.encode(), expected.encode()):
            raise Unauthorized("wrong worker token")

    async def register(self, body: Registration) -> Worker:
        """Register (or register again) a worker; another live process's id is refused."""
        worker_id = _worker_id(body.worker_id)
        endpoint = _endpoint(body.endpoint)
        max_sessions = _max_sessions(body.max_sessions)
        description = _description(body.description)
        instance = _instance(body.instance) if body.instance is not None else derived(endpoint)
        existing = await self._workers.get(worker_id)
        replacing = None
        if existing is not None and existing.instance != instance:
            if self._fresh(existing) and await self._still_runs(existing):
                raise Conflict(
                    f"worker id {worker_id!r} is in use by a running process at "
                    f"{existing.endpoint}; give this worker another id (WORKER_ID)",
                    code="worker_id_in_use",
                )
            replacing = existing.instance
        worker = await self._workers.register(
            worker_id,
            endpoint=endpoint,
            max_sessions=max_sessions,
            description=description,
            instance=instance,
            replacing=replacing,
        )
        if existing is None or existing.instance != instance:
            await self._registered(worker, existing)
        return worker

    async def _registered(self, worker: Worker, before: Worker | None) -> None:
        data: dict[str, Any] = {"workerId": worker.id, "endpoint": worker.endpoint}
        if before is not None:
            data["replaced"] = before.endpoint
            log.warning(
                "worker %s: a new process at %s took the id over from %s (its leases are fenced)",
                worker.id,
                worker.endpoint,
                before.endpoint,
            )
        else:
            log.info("worker %s registered at %s", worker.id, worker.endpoint)
        await self._audit.add(None, AuditEvent.WORKER_REGISTERED, data)

    async def heartbeat(self, worker_id: str, body: Heartbeat) -> Worker:
        """Record a heartbeat; 404 for an unknown id (the worker should register again)."""
        if not is_session_id(worker_id):
            raise NotFound(f"worker {worker_id[:80]!r} is not registered")
        status = _beat_status(body.status)
        session_count = _count("sessionCount", body.session_count, MAX_COUNT)
        cpu_usage = _figure("cpuUsage", body.cpu_usage)
        memory_usage = _figure("memoryUsage", body.memory_usage)
        uptime_s = _uptime(body.uptime)
        message_count = _count("messageCount", body.message_count, MAX_MESSAGES)
        if body.instance is not None and not await self._workers.touch(
            worker_id, _instance(body.instance)
        ):
            await self.get(worker_id)  # 404 when it is gone
            raise Conflict(
                f"worker id {worker_id!r} is held by another process now; this one must stop",
                code="worker_replaced",
            )
        return await self._workers.heartbeat(
            worker_id,
            status=status,
            session_count=session_count,
            cpu_usage=cpu_usage,
            memory_usage=memory_usage,
            uptime_s=uptime_s,
            message_count=message_count,
        )

    # --- the admin's side ----------------------------------------------------------------

    async def list(self) -> builtins.list[Worker]:
        return await self._workers.list()

    async def get(self, worker_id: str) -> Worker:
        worker = await self._workers.get(worker_id) if is_session_id(worker_id) else None
        if worker is None:
            raise NotFound(f"worker {worker_id[:80]!r} not found")
        return worker

    async def add(self, body: NewWorker) -> Worker:
        """An admin adds a worker by its endpoint; its id is made here (``w-<8 hex>``)."""
        endpoint = _endpoint(body.endpoint)
        worker = await self._workers.register(
            "w-" + secrets.token_hex(4),
            endpoint=endpoint,
            max_sessions=_max_sessions(body.max_sessions),
            description=_description(body.description),
            instance=derived(endpoint),
            replacing=None,
        )
        await self._registered(worker, None)
        return worker

    async def drain(self, worker_id: str) -> Worker:
        """Take no new sessions on it and hand its sessions over (the ``on_drain`` hook)."""
        await self.get(worker_id)
        await self._workers.set_status(worker_id, WorkerStatus.DRAINING)
        if self._on_drain is not None:
            await self._on_drain(worker_id)
        await self._audit.add(None, AuditEvent.WORKER_DRAINING, {"workerId": worker_id})
        log.info("worker %s: draining", worker_id)
        return await self.get(worker_id)

    async def remove(self, worker_id: str) -> None:
        """Drain the worker, then forget it; 404 for an unknown id."""
        worker = await self.drain(worker_id)
        await self._workers.delete(worker_id)
        data = {"workerId": worker_id, "endpoint": worker.endpoint}
        await self._audit.add(None, AuditEvent.WORKER_REMOVED, data)
        log.info("worker %s removed", worker_id)

    async def statistics(self) -> FleetStatistics:
        found = await self._workers.list()
        live = [w for w in found if w.status is WorkerStatus.LIVE]
        return FleetStatistics(
            workers=_by_status(found),
            capacity=sum(w.max_sessions for w in live),
            sessions=sum(w.session_count for w in live),
            messages=sum(w.message_count for w in found),
            cpu_usage=_average(w.cpu_usage for w in live),
            memory_usage=_average(w.memory_usage for w in live),
        )

    async def test(self, endpoint: str) -> Probe:
        """``GET {endpoint}/health``; internal addresses only with ``ALLOW_PRIVATE_URLS``."""
        url = _endpoint(endpoint)
        allow = self.settings.allow_private_urls
        try:
            await check_url(url, "endpoint", allow_private=allow)
            started = self._clock.monotonic()
            status, body = await self._health(url, guarded=not allow)
        except InternalAddress as exc:
            hint = f"set {variable('allow_private_urls')}=true to test workers on private networks"
            raise InvalidInput("endpoint", f"{exc.message}; {hint}") from None
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
            return Probe(url, reachable=False, error=_failure(exc))
        latency = round((self._clock.monotonic() - started) * 1000)
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Probe(url, error is None, latency, status, body, error)

    # --- health monitoring --------------------------------------------------------------

    async def start_monitor(self) -> MonitorStatus:
        await self._switch.set(True)
        log.info("worker health monitor switched on")
        return await self.monitor_status()

    async def stop_monitor(self) -> MonitorStatus:
        await self._switch.set(False)
        log.warning("worker health monitor switched off: silent workers are not marked dead")
        return await self.monitor_status()

    async def monitor_status(self) -> MonitorStatus:
        state = await self._switch.state()
        return MonitorStatus(
            enabled=state.enabled,
            interval_s=self.settings.heartbeat_interval_s,
            timeout_s=self.settings.worker_timeout_s,
            changed_at=state.changed_at,
            checked_at=state.checked_at,
            last_dead=state.last_dead,
            workers=_by_status(await self._workers.list()),
        )

    async def check_once(self) -> builtins.list[str]:
        """One pass of the monitor, when it is on: silent workers → dead; their ids."""
        if not (await self._switch.state()).enabled:
            return []
        dead = await self._workers.mark_dead(timedelta(seconds=self.settings.worker_timeout_s))
        for worker_id in dead:
            log.warning(
                "worker %s: no heartbeat for %gs; marked dead",
                worker_id,
                self.settings.worker_timeout_s,
            )
            await self._audit.add(None, AuditEvent.WORKER_DEAD, {"workerId": worker_id})
        await self._switch.checked(dead)
        return dead

    def monitor(self) -> Periodic:
        """The monitor as a service: :meth:`check_once` every ``HEARTBEAT_INTERVAL_MS``."""
        return Periodic(
            "worker health monitor",
            self.check_once,
            self.settings.heartbeat_interval_s,
            self._clock,
        )

    # --- probes ---------------------------------------------------------------------------

    def _fresh(self, worker: Worker) -> bool:
        silent = self._clock.now() - worker.last_heartbeat_at
        return silent < timedelta(seconds=self.settings.worker_timeout_s)

    async def _still_runs(self, worker: Worker) -> bool:
        """Whether the process behind ``worker`` still answers at its endpoint as itself."""
        try:
            status, body = await self._health(worker.endpoint, guarded=False)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError):
            return False
        if not 200 <= status < 300:
            return False
        data = body.get("data") if isinstance(body, dict) else None
        reported = data.get("instance") if isinstance(data, dict) else None
        if reported is None:  # a foreign worker: its endpoint is its identity
            return worker.instance.startswith(_DERIVED)
        return bool(reported == worker.instance)

    async def _health(self, endpoint: str, *, guarded: bool) -> tuple[int, Any]:
        """``GET {endpoint}/health``: the status and the JSON body (None if it is not JSON)."""
        extensions = {"trace": connect_guard("endpoint")} if guarded else {}
        timeout_s = self.settings.worker_probe_timeout_s
        async with asyncio.timeout(timeout_s):
            async with self._http.stream(
                "GET", endpoint + "/health", timeout=timeout_s, extensions=extensions
            ) as response:
                raw = await _read_capped(response)
        body = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
        return response.status_code, body


async def _read_capped(response: httpx.Response) -> bytes:
    raw = bytearray()
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) > _HEALTH_MAX_BYTES:
            raise httpx.DecodingError(f"the /health body is larger than {_HEALTH_MAX_BYTES} bytes")
    return bytes(raw)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]


# --- validation: each rule names the seed's field -----------------------------------------


def derived(endpoint: str) -> str:
    """The instance of a worker that sends none: its endpoint is who it is."""
    return _DERIVED + hashlib.sha256(endpoint.encode()).hexdigest()[:40]


def _worker_id(value: str) -> str:
    if not is_session_id(value):
        raise InvalidInput("workerId", f"invalid worker id {value[:80]!r}: {SESSION_ID_RULE}")
    return value


def _endpoint(value: str) -> str:
    if len(value) > MAX_ENDPOINT or any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidInput("endpoint", "endpoint is not a valid URL")
    parse_http_url(value, "endpoint")
    parts = urlsplit(value)
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise InvalidInput("endpoint", "endpoint is a base URL: no query or fragment")
    if "@" in parts.netloc:
        raise InvalidInput("endpoint", "endpoint may not carry a user name or password")
    return value.rstrip("/")


def _instance(value: str) -> str:
    if _INSTANCE.fullmatch(value) is None:
        raise InvalidInput("instance", "instance: 1-64 characters from A-Z a-z 0-9 _ . -")
    return value


def _max_sessions(value: int) -> int:
    if not 1 <= value <= MAX_SESSIONS:
        raise InvalidInput("maxSessions", f"maxSessions must be between 1 and {MAX_SESSIONS}")
    return value


def _description(value: str | None) -> str:
    if value is not None and len(value) > MAX_DESCRIPTION:
        raise InvalidInput("description", f"description is longer than {MAX_DESCRIPTION}")
    return value or ""


def _beat_status(value: str) -> WorkerStatus:
    status = _BEAT_STATUS.get(value.lower())
    if status is None:
        known = ", ".join(_BEAT_STATUS)
        raise InvalidInput("status", f"status {value[:40]!r} is not one of {known}")
    return status


def _count(name: str, value: int | None, most: int) -> int | None:
    if value is not None and not 0 <= value <= most:
        raise InvalidInput(name, f"{name} must be between 0 and {most}")
    return value


def _figure(name: str, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1e15):
        raise InvalidInput(name, f"{name} must be a finite number, 0 or more")
    return value


def _uptime(value: float | None) -> int | None:
    if value is None:
        return None
    if not (math.isfinite(value) and 0 <= value <= 1e12):
        raise InvalidInput("uptime", "uptime must be a finite number of seconds, 0 or more")
    return round(value)


def _by_status(workers: builtins.list[Worker]) -> dict[str, int]:
    counts = {s.value: 0 for s in WorkerStatus}
    for worker in workers:
        counts[worker.status.value] += 1
    return counts | {"total": len(workers)}


def _average(values: Any) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None
