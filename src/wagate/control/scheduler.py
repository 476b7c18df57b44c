"""Duties one control replica holds at a time, and the first of them: placing sessions.

:class:`Leadership` holds a named leader lease (``leader_leases``) for as
long as this replica runs and can renew it; a duty asks ``is_leader`` before
each run. Leadership is counted, like a worker's leases, from before the
renewal was sent, and ends ``LEADER_LEASE_TTL_MS / 3`` early, so two
replicas never both believe they lead. Kill the leader and another replica
takes the lease once it expired.

:class:`Scheduler` is the leader's placement duty (``docs/cluster.md``,
"Placement"): every session that should run and has no live lease is
assigned to a live worker with room (its previous worker while that one
lives, else the least loaded: :func:`wagate.control.placement.place`), each
by a compare-and-set on its lease, and the worker is woken to take it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol

from wagate.clock import Clock
from wagate.control.placement import Candidate, place
from wagate.domain.lease import Lease
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import StorageError
from wagate.lifecycle import Service

log = logging.getLogger(__name__)


class LeaderStore(Protocol):
    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None: ...

    async def resign(self, name: str, holder: str) -> None: ...


class SessionLeases(Protocol):
    async def unplaced(self, limit: int = 500) -> list[tuple[str, str | None]]: ...

    async def live_counts(self) -> dict[str, int]: ...

    async def assign(self, session_id: str, worker_id: str, ttl: timedelta) -> Lease | None: ...


class WorkerDirectory(Protocol):
    async def live(self, fresh_within: timedelta) -> list[Worker]: ...


class Leadership(Service):
    """Holds the leader lease ``name`` for this replica (``holder``) while it can."""

    def __init__(
        self, store: LeaderStore, *, name: str, holder: str, ttl_s: float, clock: Clock
    ) -> None:
        super().__init__(f"leader:{name}")
        self.name = name
        self.holder = holder
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._until = 0.0  # monotonic: this replica leads until then, unless renewed
        self.epoch: int | None = None
        self._stopping = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.epoch is not None and self._clock.monotonic() < self._until

    async def open(self) -> None:
        await self.campaign()
        self.tasks.spawn(self._campaigning(), "campaign")

    async def stop_intake(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        if self.epoch is None:
            return
        self.epoch = None
        try:
            await self._store.resign(self.name, self.holder)  # the next one need not wait
        except StorageError as exc:
            log.warning("could not resign %s: %s", self.name, exc)

    async def campaign(self) -> bool:
        """Take or renew the lease; whether this replica leads now."""
        sent = self._clock.monotonic()
        was = self.is_leader
        try:
            epoch = await self._store.hold(self.name, self.holder, timedelta(seconds=self._ttl_s))
        except StorageError as exc:
            log.warning("could not renew the %s lease: %s", self.name, exc)
            return self.is_leader
        self.epoch = epoch
        if epoch is not None:
            self._until = sent + self._ttl_s * 2 / 3
        if self.is_leader != was:
            log.info(
                "%s %s (epoch %s)", "leading" if self.is_leader else "not leading", self.name, epoch
            )
        return self.is_leader

    async def _campaigning(self) -> None:
        while not await self._clock.wait(self._stopping, self._ttl_s / 3):
            await self.campaign()


class Scheduler:
    """Places every session that should run on a live worker with room (leader only)."""

    def __init__(
        self,
        *,
        leadership: Leadership,
        leases: SessionLeases,
        workers: WorkerDirectory,
        lease_ttl: timedelta,
        worker_timeout: timedelta,
        wake: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._leadership = leadership
        self._leases = leases
        self._workers = workers
        self._lease_ttl = lease_ttl
        self._worker_timeout = worker_timeout
        self._wake = wake
        self.placed = 0  # sessions assigned by this replica since it started

    async def run_once(self) -> dict[str, str]:
        """One round of placement; the sessions assigned (session → worker)."""
        if not self._leadership.is_leader:
            return {}
        candidates = await self._candidates()
        if not candidates:
            return {}
        wanted = place(await self._leases.unplaced(), candidates)
        assigned: dict[str, str] = {}
        for session_id, worker_id in wanted.items():
            if not self._leadership.is_leader:
                break  # another replica leads now: it places the rest
            lease = await self._leases.assign(session_id, worker_id, self._lease_ttl)
            if lease is not None:
                assigned[session_id] = worker_id
        if assigned:
            self.placed += len(assigned)
            log.info(
                "placed %d session(s) on %d worker(s)", len(assigned), len(set(assigned.values()))
            )
            await self._wake_all(set(assigned.values()))
        return assigned

    async def _candidates(self) -> Sequence[Candidate]:
        live = await self._workers.live(self._worker_timeout)
        load = await self._leases.live_counts()
        return [
            Candidate(w.id, w.max_sessions, load.get(w.id, 0))
            for w in live
            if w.status is WorkerStatus.LIVE
        ]

    async def _wake_all(self, worker_ids: set[str]) -> None:
        if self._wake is None:
            return
        for worker_id in sorted(worker_ids):
            try:
                await self._wake(worker_id)
            except Exception as exc:  # a worker also renews on its own schedule
                log.warning("could not wake worker %s: %s", worker_id, exc)
