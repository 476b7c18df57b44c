"""What the control plane needs from whatever runs sessions: a :class:`SessionRuntime`.

Every verb is async and speaks plain data (ids, states, numbers), so a remote
implementation can carry it over a network. In ``wagate serve`` the runtime
is :class:`LocalRuntime`, over the embedded worker. A fleet's worker serves
its API over :class:`LeasedRuntime`: the same verbs, each made only while it
holds the session's lease (taking it when it is free); on the control plane
a client of the session's worker takes their place.
"""

from __future__ import annotations

from typing import Protocol

from wagate.domain.session import SessionState, Unlink
from wagate.worker.host import Worker
from wagate.worker.ownership import Ownership


class SessionRuntime(Protocol):
    """Start, stop, restart and logout of one session id are serialised by the runtime."""

    async def running(self) -> dict[str, SessionState]:
        """Each session with a runner, and the runner's state."""
        ...

    async def state(self, session_id: str) -> SessionState | None:
        """The state of the session's runner, None when none runs it."""
        ...

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        """Start a runner; False when one runs already."""
        ...

    async def stop(self, session_id: str, *, reason: str = ...) -> None: ...

    async def restart(self, session_id: str) -> None: ...

    async def refresh_qr(self, session_id: str) -> bool:
        """A new link for a session waiting for a scan; False when it is not waiting."""
        ...

    async def logout(self, session_id: str) -> Unlink:
        """Unlink the device (over a new link when none is up), stop, delete credentials."""
        ...

    async def await_answer(self, session_id: str, within_s: float) -> None:
        """Wait (bounded) until the runner shows a QR or pairing code, connects, or ends."""
        ...


class LocalRuntime:
    """The :class:`SessionRuntime` of a worker in this process."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def running(self) -> dict[str, SessionState]:
        return self._worker.running()

    async def state(self, session_id: str) -> SessionState | None:
        return self._worker.runner_state(session_id)

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        return await self._worker.start(session_id, pair_phone=pair_phone)

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        await self._worker.stop(session_id, reason=reason)

    async def restart(self, session_id: str) -> None:
        await self._worker.restart(session_id)

    async def refresh_qr(self, session_id: str) -> bool:
        return await self._worker.refresh_qr(session_id)

    async def logout(self, session_id: str) -> Unlink:
        return await self._worker.logout(session_id)

    async def await_answer(self, session_id: str, within_s: float) -> None:
        await self._worker.await_answer(session_id, within_s)


class LeasedRuntime(LocalRuntime):
    """A fleet worker's runtime: a session is started only under its lease, stopped with it.

    Starting takes the lease first (``Conflict session_owned_elsewhere`` when
    another live worker holds it); stopping, logging out and deleting give it
    back once the connection is gone, so the scheduler may place the session
    again at once (a stopped session is not placed: its row says so).
    """

    def __init__(self, worker: Worker, ownership: Ownership) -> None:
        super().__init__(worker)
        self._ownership = ownership

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        await self._ownership.acquire(session_id)
        return await super().start(session_id, pair_phone=pair_phone)

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        await self._ownership.acquire(session_id)  # the stop is recorded under the lease
        try:
            await super().stop(session_id, reason=reason)
        finally:
            await self._ownership.release(session_id)

    async def restart(self, session_id: str) -> None:
        await self._ownership.acquire(session_id)
        await super().restart(session_id)

    async def refresh_qr(self, session_id: str) -> bool:
        if not self._ownership.book.holds(session_id):
            return False
        return await super().refresh_qr(session_id)

    async def logout(self, session_id: str) -> Unlink:
        await self._ownership.acquire(session_id)  # a link is opened under the lease, if at all
        try:
            return await super().logout(session_id)
        finally:
            await self._ownership.release(session_id)
