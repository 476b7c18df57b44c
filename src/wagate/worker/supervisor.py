"""The runners of a worker: one task per session id, restarted after a crash, stopped gracefully.

:class:`Supervisor` owns the registry of runners. A runner is registered
with its task, with no await in between, so two never run for one id. A
runner that ends with an unexpected exception is logged, audited
(``RUNNER_CRASHED``) and replaced after a backoff; one that rests is not.
Stopping drains the runner's link (every event it already received is
handled), else cancels it; a runner that has still not ended after its
deadline stays registered as *stopping* until it really did, so that no new
runner of the id opens a second socket on the account meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import SessionState
from wagate.engine.base import AuthStore
from wagate.worker.record import AuditLog, SessionRecord
from wagate.worker.runner import RunnerDeps, SessionRunner

log = logging.getLogger(__name__)

AuthFactory = Callable[[str], AuthStore]


class Supervisor:
    """Runs, restarts and stops the session runners of one worker."""

    def __init__(
        self,
        deps: RunnerDeps,
        *,
        auth: AuthFactory,
        sessions: SessionRecord,
        audit: AuditLog,
        clock: Clock,
        worker_id: str,
        stop_timeout_s: float,
        on_end: Callable[[], None],
    ) -> None:
        self._deps = deps
        self._auth = auth
        self._sessions = sessions
        self._audit = audit
        self._clock = clock
        self._worker_id = worker_id
        self._stop_timeout_s = stop_timeout_s
        self._on_end = on_end  # a runner ended (or a stopping one finally did)
        self._runners: dict[str, SessionRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}  # past their deadline, not yet ended

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._tasks

    def ids(self) -> list[str]:
        return list(self._tasks)

    def runner(self, session_id: str) -> SessionRunner | None:
        return self._runners.get(session_id)

    def task(self, session_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(session_id)

    def states(self) -> dict[str, SessionState]:
        return {sid: runner.state for sid, runner in self._runners.items()}

    # --- start ---------------------------------------------------------------------

    def launch(self, session_id: str, state: SessionState, *, claim: bool, **kw: Any) -> None:
        """Register the session's runner and its task, with no await in between.

        ``claim``: record this worker as the session's owner first.
        """
        runner = self._runner(session_id, state, **kw)
        self._runners[session_id] = runner
        self._tasks[session_id] = asyncio.create_task(
            self._supervise(runner, claim=claim), name=f"session:{session_id}"
        )

    async def await_stopped(self, session_id: str) -> bool:
        """Wait for a runner of this id that is still ending; False when it did not in time."""
        ending = self._stopping.get(session_id)
        return ending is None or await self._ended(ending, self._stop_timeout_s)

    def _runner(self, session_id: str, state: SessionState, **kw: Any) -> SessionRunner:
        return SessionRunner(session_id, self._auth(session_id), self._deps, state=state, **kw)

    async def _supervise(self, runner: SessionRunner, *, claim: bool) -> None:
        """Run the session until it rests, starting a new runner after each crash."""
        me = asyncio.current_task()
        try:
            while True:
                try:
                    if claim:
                        await self._sessions.update(runner.session_id, worker_id=self._worker_id)
                        claim = False
                    resting = await runner.run()
                except Exception as exc:
                    runner = await self._after_crash(runner, exc)
                    continue
                runner.log.info("session rests in %s", resting)
                return
        finally:
            if self._tasks.get(runner.session_id) is me:
                del self._tasks[runner.session_id]
                self._runners.pop(runner.session_id, None)
            self._on_end()

    async def _after_crash(self, crashed: SessionRunner, exc: Exception) -> SessionRunner:
        """Log and audit a crash, back off, and hand back the runner to start next."""
        sid = crashed.session_id
        delay = self._deps.backoff.delay(crashed.attempt, self._deps.rng)
        crashed.log.error("session runner crashed; restarting in %.2fs", delay, exc_info=exc)
        data = {
            "code": "RUNNER_CRASHED",
            "msg": str(exc)[:300],
            "restart_in_ms": round(delay * 1000),
        }
        with contextlib.suppress(Exception):  # the database may be what failed
            await self._audit.add(sid, AuditEvent.ERROR, data)
        await self._clock.sleep(delay)
        runner = self._runner(
            sid,
            SessionState.RECONNECTING,
            proxy=crashed.proxy,
            pair_phone=crashed.pair_phone,
            attempt=crashed.attempt + 1,
        )
        self._runners[sid] = runner
        return runner

    # --- stop ----------------------------------------------------------------------

    async def stop(self, session_id: str) -> None:
        """Stop the session's runner: drain its link, else cancel; keep it if it will not end."""
        task, runner = self._tasks.get(session_id), self._runners.get(session_id)
        if task is None or runner is None:
            return
        limit = self._stop_timeout_s
        if not await _quietly(runner.stop(), runner):
            task.cancel()  # nothing to drain: connecting, or waiting to reconnect
        done = await self._ended(task, limit)
        if not done:
            runner.log.warning("the link did not drain within %.1fs; cancelling", limit)
            task.cancel()
            done = await self._ended(task, limit)
        if self._tasks.get(session_id) is task:  # ended or not, it is not this id's runner now
            del self._tasks[session_id]
            self._runners.pop(session_id, None)
        if not done:
            runner.log.error("the runner did not stop within %.1fs; still stopping", 2 * limit)
            self._stopping[session_id] = task
            task.add_done_callback(lambda _t: self._forget_stopping(session_id, task))

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(sid) for sid in list(self._tasks)))

    async def _ended(self, task: asyncio.Task[None], within_s: float) -> bool:
        """Whether ``task`` ends within ``within_s`` on the worker's clock."""
        if task.done():
            return True
        ended = asyncio.Event()
        task.add_done_callback(lambda _t: ended.set())
        return await self._clock.wait(ended, within_s)

    async def wait_ended(self, session_id: str, within_s: float) -> None:
        """Give the session's runner ``within_s`` to end by itself (after a logout, say)."""
        task = self._tasks.get(session_id)
        if task is not None:
            await self._ended(task, within_s)

    def _forget_stopping(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self._stopping.get(session_id) is task:
            del self._stopping[session_id]
        self._on_end()


async def _quietly(stopping: Awaitable[bool], runner: SessionRunner) -> bool:
    try:
        return await stopping
    except Exception as exc:
        runner.log.warning("graceful stop failed: %s", exc)
        return False
