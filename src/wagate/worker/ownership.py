"""A worker of a fleet runs exactly the sessions it holds a lease on (``docs/cluster.md``).

:class:`LeaseBook` is what this process holds: each session's fencing token
and the moment, on this process's monotonic clock, by which it must have
dropped the session's connection unless a renewal came first. Repositories
ask it for the fence of every owner-only write (it is the
:class:`~wagate.domain.lease.Fences` they take), so a write made after that
moment is refused here, before it reaches the database.

:class:`Ownership` keeps the book current and the runners in step with it:
every ``LEASE_RENEW_MS`` (or at once when woken) it renews this worker's
leases in one statement, learns the new assignments from the answer, starts
their sessions and hands over the ones it no longer holds. A guard task, apart
from the renewal (which may hang on a dead database), stops each session at
its deadline. A renewal's validity is counted from *before* the request was
sent, so a slow answer can only shorten it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from wagate.clock import Clock
from wagate.domain.lease import Fence, Lease
from wagate.errors import Conflict, NotFound, StorageError
from wagate.lifecycle import Service
from wagate.worker.host import Worker

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    """The lease operations a worker makes (``storage.repos.leases.SessionLeaseRepo``)."""

    async def assign(self, session_id: str, worker_id: str, ttl: timedelta) -> Lease | None: ...

    async def renew(self, worker_id: str, ttl: timedelta) -> list[Lease]: ...

    async def release(self, fence: Fence) -> bool: ...

    async def owner(self, session_id: str) -> Lease | None: ...


class Liveness(Protocol):
    """The worker's row: False from ``touch`` says another process took this worker id."""

    async def touch(self, worker_id: str, instance: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Terms:
    """How long a lease lasts, how often it is renewed, how early an owner stops."""

    ttl_s: float
    renew_s: float
    margin_s: float

    def __post_init__(self) -> None:
        if not 0 < self.renew_s < self.ttl_s - self.margin_s:
            raise ValueError(
                "leases need LEASE_RENEW_MS < LEASE_TTL_MS - LEASE_MARGIN_MS "
                f"(renew {self.renew_s}s, ttl {self.ttl_s}s, margin {self.margin_s}s)"
            )

    @property
    def ttl(self) -> timedelta:
        return timedelta(seconds=self.ttl_s)

    @property
    def hold_s(self) -> float:
        """How long after sending a renewal the owner may keep its connection."""
        return self.ttl_s - self.margin_s


@dataclass(frozen=True, slots=True)
class _Held:
    epoch: int
    until: float  # monotonic: the connection must be gone by then


class LeaseBook:
    """The leases this process holds, each with its fencing token and local deadline."""

    def __init__(self, worker_id: str, clock: Clock, terms: Terms) -> None:
        self.worker_id = worker_id
        self._clock = clock
        self._terms = terms
        self._held: dict[str, _Held] = {}
        self.changed = asyncio.Event()  # set when a deadline moved or a lease came or went

    def fence_for(self, session_id: str) -> Fence | None:
        held = self._held.get(session_id)
        if held is None or self._clock.monotonic() >= held.until:
            return None
        return Fence(session_id, self.worker_id, held.epoch)

    def holds(self, session_id: str) -> bool:
        return self.fence_for(session_id) is not None

    def valid(self) -> set[str]:
        """The sessions whose leases are held and within their deadline."""
        now = self._clock.monotonic()
        return {sid for sid, held in self._held.items() if now < held.until}

    def renewed(self, leases: list[Lease], sent_at: float) -> None:
        """The renewal sent at ``sent_at`` answered with ``leases``: exactly these are held."""
        until = sent_at + self._terms.hold_s
        self._held = {
            lease.session_id: _Held(lease.epoch, until)
            for lease in leases
            if lease.worker_id == self.worker_id
        }
        self._ring()

    def add(self, lease: Lease, sent_at: float) -> None:
        self._held[lease.session_id] = _Held(lease.epoch, sent_at + self._terms.hold_s)
        self._ring()

    def drop(self, session_id: str) -> Fence | None:
        held = self._held.pop(session_id, None)
        self._ring()
        return Fence(session_id, self.worker_id, held.epoch) if held else None

    def prune(self) -> set[str]:
        """Forget the leases whose deadline passed; the sessions they were held for."""
        now = self._clock.monotonic()
        lapsed = {sid for sid, held in self._held.items() if now >= held.until}
        for session_id in lapsed:
            del self._held[session_id]
        if lapsed:
            self._ring()
        return lapsed

    def next_deadline(self) -> float | None:
        return min((held.until for held in self._held.values()), default=None)

    def _ring(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Ownership(Service):
    """Renews this worker's leases and keeps its runners to exactly the sessions it holds.

    ``on_taken_over`` is called once when the worker's row names another
    process (its id was reused): every session is handed over, and the
    role should exit.
    """

    def __init__(
        self,
        *,
        worker: Worker,
        book: LeaseBook,
        leases: LeaseStore,
        liveness: Liveness,
        instance: str,
        terms: Terms,
        clock: Clock,
        on_taken_over: Callable[[], Awaitable[None]] | None = None,
        wakeups: AsyncIterator[None] | None = None,
    ) -> None:
        # a handover stops each runner within the worker's stop deadline (twice, at worst)
        super().__init__("ownership", stop_timeout_s=3 * worker.settings.stop_timeout_s)
        self._wakeups = wakeups  # announcements of new assignments (Redis), besides renewals
        self.worker = worker
        self.book = book
        self._leases = leases
        self._liveness = liveness
        self._instance = instance
        self._terms = terms
        self._clock = clock
        self._on_taken_over = on_taken_over
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # one renewal-and-enforce, acquire or release at a time: a renewal's answer is the
        # whole of what is held, so a lease taken or given up meanwhile would be lost or revived
        self._step = asyncio.Lock()
        self.draining = False  # taking no new sessions: handing every one over
        self.taken_over = False

    @property
    def worker_id(self) -> str:
        return self.book.worker_id

    # --- service lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        await self.tick()  # ready means: the sessions held at start are starting
        self.tasks.spawn(self._renewing(), "renew")
        self.tasks.spawn(self._guarding(), "guard")
        if self._wakeups is not None:
            self.tasks.spawn(self._listening(self._wakeups), "wakeups")

    async def stop_intake(self) -> None:
        self._stopping.set()
        self.draining = True

    async def drain(self) -> None:
        await self.hand_over_all(release=True)

    # --- what the worker's API and the role ask -------------------------------------

    def wake(self) -> None:
        """Renew now (an assignment was announced, or an operator asked)."""
        self._wake.set()

    async def acquire(self, session_id: str) -> Fence:
        """Hold the session's lease (taking it when it is free); Conflict when another holds it."""
        async with self._step:
            return await self._acquire(session_id)

    async def _acquire(self, session_id: str) -> Fence:
        sent = self._clock.monotonic()
        lease = await self._leases.owner(session_id)
        if lease is None:
            lease = await self._leases.assign(session_id, self.worker_id, self._terms.ttl)
        if lease is None or lease.worker_id != self.worker_id:
            holder = f" (worker {lease.worker_id})" if lease else ""
            raise Conflict(
                f"session {session_id!r} runs on another worker{holder}",
                code="session_owned_elsewhere",
            )
        self.book.add(lease, sent)
        fence = self.book.fence_for(session_id)
        assert fence is not None  # just added, within its deadline
        return fence

    async def release(self, session_id: str) -> None:
        """Stop the session here, then give its lease up so another worker may take it at once."""
        async with self._step:
            await self._release(session_id)

    async def _release(self, session_id: str) -> None:
        await self.worker.hand_over(session_id)
        fence = self.book.drop(session_id)
        if fence is not None:
            try:
                await self._leases.release(fence)
            except StorageError as exc:  # it expires by itself
                log.warning("could not release the lease of %s: %s", session_id, exc)

    async def hand_over_all(self, *, release: bool) -> None:
        """Stop every session here (drain, shutdown); release their leases when asked."""
        self.draining = True
        ids = set(self.worker.running()) | self.book.valid()
        if release:
            async with self._step:
                await asyncio.gather(*(self._release(sid) for sid in ids))
        else:
            await asyncio.gather(*(self.worker.hand_over(sid) for sid in ids))

    # --- the loop ------------------------------------------------------------------

    async def tick(self) -> None:
        """Renew, then start what is held and hand over what is not."""
        async with self._step:
            await self._renew()
            if self.taken_over:
                return
            await self._enforce()

    async def _renew(self) -> None:
        sent = self._clock.monotonic()
        try:
            if not await self._liveness.touch(self.worker_id, self._instance):
                await self._lost_the_id()
                return
            leases = await self._leases.renew(self.worker_id, self._terms.ttl)
        except StorageError as exc:
            log.warning("could not renew this worker's leases: %s", exc)
            return
        self.book.renewed(leases, sent)

    async def _enforce(self) -> None:
        held = self.book.valid()
        lost = set(self.worker.running()) - held
        for session_id in lost:
            log.warning("session %s: lease no longer held here; handing it over", session_id)
        await asyncio.gather(*(self.worker.hand_over(sid) for sid in lost))
        if self.draining:
            return
        for session_id in sorted(held - set(self.worker.running())):
            await self._adopt(session_id)

    async def _adopt(self, session_id: str) -> None:
        try:
            started = await self.worker.adopt(session_id)
        except (Conflict, NotFound) as exc:  # full, shutting down, or deleted meanwhile
            log.warning("session %s not taken here: %s", session_id, exc.message)
            started = False
        except StorageError as exc:
            log.warning("session %s could not be started: %s", session_id, exc)
            return
        if not started and not self.worker.is_running(session_id):
            await self._release(session_id)  # it should not run (or cannot here): let it go

    async def _lost_the_id(self) -> None:
        if self.taken_over:
            return
        self.taken_over = True
        log.error(
            "worker id %s was taken over by another process; stopping every session here",
            self.worker_id,
        )
        await self.hand_over_all(release=False)
        if self._on_taken_over is not None:
            await self._on_taken_over()

    async def _renewing(self) -> None:
        while not self._stopping.is_set():
            await self._clock.wait(self._wake, self._terms.renew_s)
            self._wake.clear()
            if self._stopping.is_set() or self.taken_over:
                return
            try:
                await self.tick()
            except Exception:
                log.exception("lease renewal failed")

    async def _listening(self, wakeups: AsyncIterator[None]) -> None:
        async for _ in wakeups:
            self.wake()

    async def _guarding(self) -> None:
        """Hand over each session the moment its deadline passes, whatever the renewal does."""
        while not self._stopping.is_set():
            changed = self.book.changed
            deadline = self.book.next_deadline()
            left = 3600.0 if deadline is None else deadline - self._clock.monotonic()
            if left > 0:
                await self._clock.wait(changed, left)
                continue
            lapsed = self.book.prune() & set(self.worker.running())
            for session_id in lapsed:
                log.error("session %s: lease not renewed in time; dropping the link", session_id)
            await asyncio.gather(*(self.worker.hand_over(sid) for sid in lapsed))
