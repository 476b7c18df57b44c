"""Workers of a fleet, as the control plane knows them (seed 002's registry)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class WorkerStatus(enum.StrEnum):
    LIVE = "live"  # heartbeats on time; takes sessions
    DRAINING = "draining"  # handing its sessions over; takes none
    DEAD = "dead"  # missed its heartbeats; its sessions go elsewhere


@dataclass(frozen=True, slots=True)
class Worker:
    id: str
    endpoint: str
    max_sessions: int
    description: str
    status: WorkerStatus
    instance: str  # the process behind the id: a second live process with the same id is refused
    session_count: int
    message_count: int
    cpu_usage: float | None
    memory_usage: float | None
    uptime_s: int | None
    registered_at: datetime
    last_heartbeat_at: datetime
    updated_at: datetime

    @property
    def free(self) -> int:
        """How many more sessions it can take."""
        return max(0, self.max_sessions - self.session_count)
