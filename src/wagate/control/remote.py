"""The control plane's :class:`~wagate.control.runtime.SessionRuntime`: the fleet, over HTTP.

A session's commands go to the worker that owns it (its live lease names
it), over that worker's ``/internal`` routes (``api/routes/runtime.py``):
request proxying, with ``WORKER_REQUEST_TIMEOUT_MS`` and a clear ``503
worker_unavailable`` when the worker cannot be reached. A session that no
worker owns is started on the least loaded live worker with room (the same
:func:`~wagate.control.placement.place` the scheduler uses), which takes
the lease itself; stopping a session nobody runs is recorded here. Reads
come from the database: what a runner records is the record.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Protocol

import httpx

from wagate.clock import Clock
from wagate.control.placement import Candidate, place
from wagate.domain.lease import EDGE_HOLDER_PREFIX, Lease
from wagate.domain.session import ChangeKind, SessionChange, SessionState, Unlink
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import Conflict, InvalidInput, NotFound, WagateError, WorkerUnavailable
from wagate.storage.repos.sessions import SessionRepo

log = logging.getLogger(__name__)

# how often a wait for a runner's answer looks at the record again, unless a change
# announced on the bus (Redis) wakes it first
ANSWER_POLL_S = 0.5


class Owners(Protocol):
    async def owner(self, session_id: str) -> Lease | None: ...

    async def live_counts(self) -> dict[str, int]: ...

    async def held_by(self, worker_id: str) -> list[Lease]: ...


class Workers(Protocol):
    async def get(self, worker_id: str) -> Worker | None: ...

    async def live(self, fresh_within: timedelta) -> list[Worker]: ...


class RemoteRuntime:
    """Every verb of a session, carried to the worker that owns it (or should)."""

    def __init__(
        self,
        *,
        sessions: SessionRepo,
        owners: Owners,
        workers: Workers,
        client: httpx.AsyncClient,
        api_key: str,
        clock: Clock,
        worker_timeout: timedelta,
        request_timeout_s: float,
        processes: bool = False,
    ) -> None:
        self._sessions = sessions
        self._owners = owners
        self._workers = workers
        self._client = client
        self._headers = {"X-Api-Key": api_key}
        self._clock = clock
        self._worker_timeout = worker_timeout
        self._timeout_s = request_timeout_s
        # SESSION_RUNNER=process: a session nobody runs is given its own process by the
        # leader's runner once its row says it should run; no worker is chosen here
        self._processes = processes
        self._changed: dict[str, asyncio.Event] = {}  # sessions someone waits on

    # --- reads: the record -------------------------------------------------------------

    async def running(self) -> dict[str, SessionState]:
        owned = await self._sessions.owners()  # session → worker, live leases only
        running = await self._sessions.find(states=[s for s in SessionState if s.is_running])
        return {s.id: s.status for s in running if s.id in owned}

    async def state(self, session_id: str) -> SessionState | None:
        if await self._owners.owner(session_id) is None:
            return None
        session = await self._sessions.get(session_id)
        return session.status if session is not None else None

    async def await_answer(self, session_id: str, within_s: float) -> None:
        """Until the record shows a QR, a pairing code, the connection, or a rest (bounded).

        Woken by :meth:`heard` (a change on the bus), else it looks again every
        ``ANSWER_POLL_S``: the bus only hurries the wait, the record decides.
        """
        deadline = self._clock.monotonic() + within_s
        changed = self._changed.setdefault(session_id, asyncio.Event())
        try:
            while self._clock.monotonic() < deadline:
                changed.clear()
                session = await self._sessions.get(session_id)
                if session is None or _answered(session.status, session.qr, session.pair_code):
                    return
                left = deadline - self._clock.monotonic()
                await self._clock.wait(changed, min(ANSWER_POLL_S, max(0.0, left)))
        finally:
            self._changed.pop(session_id, None)

    def heard(self, session_id: str) -> None:
        """A change of the session was announced (the bus of session changes)."""
        changed = self._changed.get(session_id)
        if changed is not None:
            changed.set()

    # --- verbs: the owner ------------------------------------------------------------

    async def start(self, session_id: str, *, pair_phone: str | None = None) -> bool:
        if self._processes and await self._owner(session_id) is None:
            return await self._record_wanted(session_id)
        body = {"pairPhone": pair_phone} if pair_phone else None
        for _ in range(3):  # the session may be placed elsewhere meanwhile: follow it
            worker = await self._owner(session_id) or await self._choose(session_id)
            try:
                answer = await self._call(worker, "start", session_id, body)
            except Conflict as exc:
                if exc.code != "session_owned_elsewhere":
                    raise
                continue
            return bool(answer.get("started"))
        raise Conflict(
            f"session {session_id!r} keeps moving between workers; try again",
            code="session_moving",
        )

    async def stop(self, session_id: str, *, reason: str = "stopped by operator") -> None:
        lease = await self._owners.owner(session_id)
        if lease is not None and lease.worker_id.startswith(EDGE_HOLDER_PREFIX):
            # an edge worker holds it (seed 001): it cannot be told; the record says stopped
            await self._record_stopped(session_id, reason)
            return
        worker = await self._owner(session_id)
        if worker is None:
            await self._record_stopped(session_id, reason)
            return
        await self._call(worker, "stop", session_id, {"reason": reason})

    async def restart(self, session_id: str) -> None:
        if self._processes and await self._owner(session_id) is None:
            await self._record_wanted(session_id)
            return
        worker = await self._owner(session_id) or await self._choose(session_id)
        await self._call(worker, "restart", session_id)

    async def refresh_qr(self, session_id: str) -> bool:
        worker = await self._owner(session_id)
        if worker is None:
            return False
        return bool((await self._call(worker, "refresh-qr", session_id)).get("refreshed"))

    async def logout(self, session_id: str) -> Unlink:
        """On the owner; else on any live worker (it opens a link with the credentials)."""
        worker = await self._owner(session_id)
        if worker is None:
            try:
                worker = await self._choose(session_id)
            except WorkerUnavailable:
                log.warning("session %s: no live worker to log its device out", session_id)
                return Unlink.FAILED
        answer = await self._call(worker, "logout", session_id)
        return Unlink(answer.get("unlink", Unlink.FAILED.value))

    # --- where a session runs -----------------------------------------------------------

    async def _owner(self, session_id: str) -> Worker | None:
        lease = await self._owners.owner(session_id)
        if lease is None:
            return None
        if lease.worker_id.startswith(EDGE_HOLDER_PREFIX):
            raise Conflict(
                f"session {session_id!r} is held by edge worker "
                f"{lease.worker_id.removeprefix(EDGE_HOLDER_PREFIX)!r} (seed 001); "
                "the fleet takes it once that worker's claim lapses",
                code="session_on_edge",
            )
        worker = await self._workers.get(lease.worker_id)
        if worker is None:
            raise WorkerUnavailable(
                f"session {session_id!r} is held by worker {lease.worker_id!r}, which is not "
                "registered; its lease expires by itself"
            )
        return worker

    async def _choose(self, session_id: str) -> Worker:
        """The live, not draining worker with the most room (the session's previous one first)."""
        live = {
            w.id: w
            for w in await self._workers.live(self._worker_timeout)
            if w.status is WorkerStatus.LIVE
        }
        load = await self._owners.live_counts()
        session = await self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        candidates = [Candidate(w.id, w.max_sessions, load.get(w.id, 0)) for w in live.values()]
        chosen = place([(session_id, session.worker_id)], candidates).get(session_id)
        if chosen is None:
            raise WorkerUnavailable(
                "no live worker has room for another session "
                f"({len(live)} live; start more workers or raise WORKER_MAX_SESSIONS)"
            )
        return live[chosen]

    async def _call(
        self, worker: Worker, verb: str, session_id: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{worker.endpoint.rstrip('/')}/internal/sessions/{session_id}/{verb}"
        try:
            answer = await self._client.post(
                url, json=body, headers=self._headers, timeout=self._timeout_s
            )
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(
                f"worker {worker.id!r} ({worker.endpoint}) did not answer: {type(exc).__name__}"
            ) from None
        if answer.status_code < 300:
            data: dict[str, Any] = answer.json()
            return data
        raise _error_of(answer, worker)

    async def _record_wanted(self, session_id: str) -> bool:
        """The row says the session should run: the leader's process runner starts it."""
        session = await self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} not found")
        if session.status.is_running:
            return False
        now = self._clock.now()
        data = {"kind": None, "reason": "started by operator"}
        change = SessionChange(session_id, SessionState.CONNECTING, ChangeKind.STATE, now, data)
        await self._sessions.record(change)
        return True

    async def _record_stopped(self, session_id: str, reason: str) -> None:
        if await self._sessions.get(session_id) is None:
            return  # deleted meanwhile: nothing runs, nothing to record
        data = {"kind": None, "reason": reason}
        change = SessionChange(
            session_id, SessionState.STOPPED, ChangeKind.STATE, self._clock.now(), data
        )
        await self._sessions.record_disconnected(change, None, reason)


def _answered(state: SessionState, qr: str | None, pair_code: str | None) -> bool:
    return state is SessionState.CONNECTED or not state.is_running or bool(qr or pair_code)


def _error_of(answer: httpx.Response, worker: Worker) -> WagateError:
    """The worker's error body as our own error again (the API maps it back to its status)."""
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        error = {}
    code = str(error.get("code") or "worker_error")
    message = str(error.get("message") or answer.text[:200])
    status = answer.status_code
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message, code=code)
    if status == 422:
        return InvalidInput(str(error.get("field") or "body"), message)
    return WorkerUnavailable(f"worker {worker.id!r} answered {status}: {code}: {message}")
