"""How this process is: its sessions by bucket, its engine's figures, its resources.

One superset object answers seeds 001 and 002 at once (``/`` and ``/health``);
seed 003's ``/healthz`` is its ``needsRestart`` alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psutil

from wagate.control.runtime import SessionRuntime
from wagate.domain.session import health_bucket

EngineFigures = Callable[[], Mapping[str, Any]]
FleetFigures = Callable[[], Awaitable[Mapping[str, Any]]]


class HealthService:
    def __init__(
        self,
        runtime: SessionRuntime,
        *,
        engine: EngineFigures,
        worker_id: str,
        max_sessions: int,
        instance: str | None = None,
        fleet: FleetFigures | None = None,
    ) -> None:
        self.runtime = runtime
        self._engine = engine
        self.worker_id = worker_id
        self.max_sessions = max_sessions
        self.instance = instance  # this process, among those that used its worker id
        self._fleet = fleet  # a control plane's view of its workers, leases and sessions
        self._process = psutil.Process()
        self._started = time.monotonic()

    def engine(self) -> dict[str, Any]:
        """The engine's name and its own figures (neonize reports some)."""
        return dict(self._engine())

    def needs_restart(self) -> bool:
        """The engine asks for this process to be recycled (the sessions resume after)."""
        return bool(self.engine().get("needsRestart", False))

    async def report(self) -> dict[str, Any]:
        instances = {"connected": 0, "connecting": 0, "reconnecting": 0}
        running = await self.runtime.running()
        for state in running.values():
            bucket = health_bucket(state)
            if bucket is not None:
                instances[bucket] += 1
        engine = self.engine()
        needs_restart = bool(engine.get("needsRestart", False))
        process = self._process
        report: dict[str, Any] = {
            # seed 001
            "status": "ok",
            "instances": instances,
            "needsRestart": needs_restart,
            # seed 002
            "success": True,
            "data": {
                "status": "online",
                "needsRestart": needs_restart,
                "workerId": self.worker_id,
                **({"instance": self.instance} if self.instance else {}),
                "sessionCount": len(running),
                "cpuUsage": round(process.cpu_percent(None) / (psutil.cpu_count() or 1), 1),
                "memoryUsage": round(process.memory_percent(), 1),
                "uptime": round(time.monotonic() - self._started),
                "maxSessions": self.max_sessions,
                "openFiles": process.num_fds(),
                "threads": process.num_threads(),
                "engine": engine,
            },
        }
        if self._fleet is not None:
            report["fleet"] = dict(await self._fleet())
        return report
